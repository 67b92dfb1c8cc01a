"""patsearch.version: the version alone from an install, plus the commit (and whether it was edited) from a
git checkout, as ``--version``, profile tables and run folders record it."""
import shutil
import subprocess

import pytest

from patsearch import __version__, version


@pytest.fixture
def source_root(monkeypatch):
    def use(path):
        monkeypatch.setattr(version, "_SOURCE_ROOT", path)
        version.git_commit.cache_clear()
    yield use
    version.git_commit.cache_clear()


def test_an_install_reports_the_version_alone(tmp_path, source_root):
    source_root(tmp_path)  # site-packages: no .git beside the package
    assert version.describe() == f"patsearch {__version__}"
    assert version.provenance() == {"patsearch": __version__}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_a_checkout_reports_its_commit_and_uncommitted_changes(tmp_path, source_root):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "--short=12", "HEAD")
    source_root(tmp_path)
    assert version.describe() == f"patsearch {__version__} (commit {head})"
    (tmp_path / "untracked.txt").write_text("x")  # untracked files (runs/, caches) are not edits
    version.git_commit.cache_clear()
    assert version.provenance() == {"patsearch": __version__, "patsearch_commit": head}
    (tmp_path / "a.txt").write_text("2")
    version.git_commit.cache_clear()
    assert version.provenance()["patsearch_commit"] == f"{head}-dirty"


def test_profile_tables_record_the_version():
    from patsearch.profiler.devices import software_versions

    assert software_versions()["patsearch"] == __version__
