"""W&B's mode, decided before ``wandb.init`` (repcali/tracking.py): offline within the probe's timeout when
the server cannot be reached, an explicit mode taken without probing, one probe per process. No test
touches the network: the server is a closed or a silent port on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import wandb
from omegaconf import OmegaConf

from repcali import tracking

DUMMY_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, the length of a real key
PROBE_TIMEOUT_S = 0.5


def logger_config(mode: str | None = None, probe_timeout_s: float = PROBE_TIMEOUT_S):
    return OmegaConf.create({"logger": {"name": "wandb", "mode": mode, "probe_timeout_s": probe_timeout_s}})


def closed_port() -> int:
    """A local port nothing listens on: bound, then closed (a connection to it is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that never answers, like a server behind a firewall that drops packets: a listener
    whose accept queue (backlog 0) is already full, so the kernel drops every further connection's SYN."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())  # fills the queue; nothing ever accepts it
        yield server.getsockname()[1]


def never_login(*args, **kwargs):
    raise AssertionError("wandb.login asks the server whose key it is (5 s when it cannot be reached)")


@pytest.fixture(autouse=True)
def wandb_env(monkeypatch, tmp_path):
    """An API key in the environment, no W&B settings, no proxy, a fresh probe cache, and no wandb.login
    (the decision must not call it). wandb is imported first, so no test times the import."""
    for name in ("WANDB_MODE", "WANDB_BASE_URL", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", DUMMY_KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    wandb.teardown()
    tracking.reachable.cache_clear()
    monkeypatch.setattr(wandb, "login", never_login)
    yield
    wandb.teardown()
    tracking.reachable.cache_clear()


@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection the probe attempts (each still made, to the local test port)."""
    attempts: list[tuple] = []
    connect = socket.create_connection

    def counted(address, *args, **kwargs):
        attempts.append(address)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    return attempts


def decided(cfg) -> tuple[str | None, str | None, float]:
    start = time.perf_counter()
    mode, why = tracking.wandb_mode(cfg)
    return mode, why, time.perf_counter() - start


def test_a_refused_server_means_offline_at_once(monkeypatch, connections):
    port = closed_port()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    mode, why, seconds = decided(logger_config())
    assert (mode, why) == ("offline", f"127.0.0.1:{port} not reachable within {PROBE_TIMEOUT_S:g} s")
    assert connections == [("127.0.0.1", port)] and seconds < PROBE_TIMEOUT_S + 1.0


def test_a_silent_server_means_offline_after_the_probe_timeout(monkeypatch, silent_port):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent_port}")
    mode, why, seconds = decided(logger_config())
    assert mode == "offline" and why == f"127.0.0.1:{silent_port} not reachable within {PROBE_TIMEOUT_S:g} s"
    assert PROBE_TIMEOUT_S * 0.9 <= seconds < PROBE_TIMEOUT_S + 1.0  # waited for the probe, and no longer


def test_the_proxy_is_probed_when_one_is_set(monkeypatch, connections):
    port = closed_port()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.invalid")  # never resolved: the proxy is asked
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert decided(logger_config())[:2] == ("offline", f"127.0.0.1:{port} not reachable within 0.5 s")
    assert connections == [("127.0.0.1", port)]


EXPLICIT = [
    ("online", None, "online"),
    ("offline", None, "offline"),
    (None, "offline", "offline"),
    ("online", "offline", "online"),
]


@pytest.mark.parametrize(("mode", "env_mode", "expected"), EXPLICIT)
def test_an_explicit_mode_wins_without_probing(monkeypatch, connections, mode, env_mode, expected):
    """``logger.mode``, else ``WANDB_MODE`` (what the SLURM launchers export), is taken as it is."""
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    if env_mode:
        monkeypatch.setenv("WANDB_MODE", env_mode)
    assert decided(logger_config(mode))[:2] == (expected, None)
    assert connections == []


def test_no_api_key_means_offline_without_probing(monkeypatch, connections):
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    assert decided(logger_config())[:2] == ("offline", "no API key configured")
    assert connections == []


@pytest.mark.parametrize("netrc_host", ["127.0.0.1", "elsewhere.example"])
def test_a_key_in_the_netrc_file_counts_for_its_host_only(monkeypatch, connections, tmp_path, netrc_host):
    monkeypatch.delenv("WANDB_API_KEY")
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine {netrc_host}\n  login user\n  password {DUMMY_KEY}\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    port = closed_port()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    mode, why, _ = decided(logger_config())
    if netrc_host == "127.0.0.1":
        assert (mode, why, connections) == (
            "offline",
            f"127.0.0.1:{port} not reachable within 0.5 s",
            [("127.0.0.1", port)],
        )
    else:
        assert (mode, why, connections) == ("offline", "no API key configured", [])


def test_without_a_base_url_the_installed_wandbs_default_server_is_probed():
    """wandb 0.31 moved its default server (api.wandb.ai to api.forge.coreweave.com): ask wandb, not a constant."""
    host = urlsplit(wandb.Settings().base_url).hostname
    assert tracking.server_address() == (host, 443)


def test_the_probe_runs_once_per_process(monkeypatch, connections, silent_port):
    """A sweep in one process (Hydra's basic launcher) waits for the probe once, not once per run."""
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{silent_port}")
    first = decided(logger_config())
    following = [decided(logger_config()) for _ in range(3)]
    assert len(connections) == 1
    assert first[2] >= PROBE_TIMEOUT_S * 0.9 and all(seconds < 0.1 for *_, seconds in following)
    assert {(mode, why) for mode, why, _ in following} == {first[:2]}
