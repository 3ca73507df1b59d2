"""The one place that names where the project lives (Colab cells and badges are generated from it).

``python -m utils.series --sync`` rewrites every notebook's badge and Colab set-up cell from these
values, and ``tests/test_notebook_pairs.py`` fails when a notebook disagrees with them.
"""

REPO_URL = "https://github.com/quantized-forgetting/quantized-forgetting"
#: the git ref that Colab installs; pin it to a release tag when one is cut
REPO_REF = "main"
REPO_SLUG = REPO_URL.removeprefix("https://github.com/")


def colab_badge(notebook_name: str) -> str:
    """Markdown for the 'Open in Colab' badge of ``notebooks/<notebook_name>``."""
    url = f"https://colab.research.google.com/github/{REPO_SLUG}/blob/{REPO_REF}/notebooks/{notebook_name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def colab_setup_source() -> str:
    """Source of the set-up cell: on Colab it installs this repository (keeping Colab's torch)."""
    return (
        "# Colab only: install this project (Colab's own torch/transformers are kept).\n"
        "import sys, subprocess\n"
        "if 'google.colab' in sys.modules:\n"
        f"    REPO_URL, REPO_REF = '{REPO_URL}', '{REPO_REF}'\n"
        "    subprocess.run(['git', 'clone', '--depth', '1', '--branch', REPO_REF, REPO_URL, 'repo'], check=True)\n"
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-e', 'repo'], check=True)\n"
        "    sys.path.insert(0, 'repo')\n"
        "    import os; os.chdir('repo/notebooks')"
    )
