"""Shared helpers: a tiny space, a fake layer factory (fast, counts calls) and a minimal timing budget."""
import pytest
from profiler_helpers import QUICK, CountingFactory, ScriptedMonitor


@pytest.fixture
def tiny_space():
    from patsearch.space import load_space

    return load_space("tiny")


@pytest.fixture
def counting_factory():
    return CountingFactory()


@pytest.fixture
def quick():
    return QUICK


@pytest.fixture
def factory_cls():
    return CountingFactory


@pytest.fixture(autouse=True)
def _user_home(tmp_path, monkeypatch):
    """Profiles a test builds without --out go to a throwaway user folder, never to ~ or the source tree."""
    monkeypatch.setenv("PATSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PATSEARCH_IGNORE_SHIPPED_PROFILES", raising=False)
    return tmp_path / "home"


@pytest.fixture(autouse=True)
def quiet_host(monkeypatch):
    """A quiet 2-core host: measurements in these tests never see (or wait on) the real host's load or cores.
    Tests of a busy host replace ``host.LoadMonitor`` with their own :class:`ScriptedMonitor`."""
    from patsearch import host

    monitor = ScriptedMonitor([0.0])
    monkeypatch.setattr(host, "LoadMonitor", monitor)
    monkeypatch.setattr(host, "usable_cores", lambda: 2)
    monkeypatch.setattr(host, "wait_until_quiet", lambda *a, **k: None)
    return monitor
