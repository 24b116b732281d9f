"""The documentation is part of the product: the README stays short, its links and the links in
docs/ resolve, every saerec command written in them parses, the configuration reference lists every
key with its default, and the README's quick start runs as written on the synthetic dataset (train,
look at features, steer, serve, call the service), followed by the serving guide's examples."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from saerec.cli import build_parser, main
from saerec.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]

# Appended to the quick start's `saerec run` to keep it small; the README's lines run unchanged
# otherwise, except that the gRPC port is swapped for a free one (other tests may hold 9000).
TINY = ["--epochs", "2", "--set", "data.synthetic_users=300", "--set", "data.synthetic_items=80",
        "--set", "model.n_layers=2", "--set", "model.d_model=16",
        "--set", "model.max_len=30", "--set", "train.patience=2", "--set", "sae.n_latents=64", "--set", "sae.k=8",
        "--set", "sae.epochs=1", "--set", "sae.dead_window=2000", "--set", "steer.value_step=5",
        "--set", "steer.attributes=Sci-Fi", "--set", "steer.splices=delta", "--set", "steer.probe=false",
        "--set", "steer.value_min=-5", "--set", "steer.value_max=5", "--set", "steer.eval_positions=2"]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(bash|python|text|yaml|)\n(.*?)```", re.S)


def blocks(text: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def shell_lines(text: str) -> list[str]:
    """The lines of the ```bash blocks, continuation lines joined."""
    return [line for body in blocks(text, "bash") for line in body.replace("\\\n", " ").splitlines()]


def words_of(line: str) -> list[str]:
    """A shell line's words up to a pipe, `&&` or `&`, without `VAR=value` prefixes and comments."""
    words = []
    for w in shlex.split(line, comments=True):
        if w in ("|", "&&", "&", ";"):
            break
        words.append(w)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    return words


def quick_start() -> list[list[str]]:
    """The README's quick start: the first ```bash block after the ``<!-- quickstart -->`` marker."""
    text = README.read_text()
    assert "<!-- quickstart -->" in text, "README.md lost its <!-- quickstart --> marker"
    rest = text[text.index("<!-- quickstart -->"):]
    body = blocks(rest, "bash")[0]
    return [shlex.split(line, comments=True) for line in body.splitlines() if shlex.split(line, comments=True)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def test_readme_is_under_15_kb():
    size = README.stat().st_size
    assert size < 15_000, f"README.md is {size} bytes; move detail into docs/"


def test_every_relative_link_resolves():
    assert len(DOCS) >= 8, [d.name for d in DOCS]
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):                  # http(s):, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every ``saerec ...`` line of a ```bash block, and every inline
    `saerec ... --flag ...` span that is a whole command (not a synopsis with [...], a|b or ...)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        found += [(page.name, line) for line in shell_lines(text) if words_of(line)[:1] == ["saerec"]]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(page.name, span) for span in re.findall(r"`(saerec [^`]+)`", prose)
                  if " --" in span and not re.search(r"[\[\]|<>]|\.\.\.|\bCOMMAND\b", span)]
    return found


def test_every_documented_command_parses():
    """Each documented ``saerec`` command parses with the real argument parser (its command, flags and
    choices exist; the job after ``submit ... --`` too), and each ``python FILE``/``bash FILE`` names a
    file of the repository."""
    parser, bad = build_parser(), []
    commands = documented_commands()
    assert len(commands) >= 30, len(commands)
    for page, line in commands:
        argv = words_of(line)[1:]
        if argv[:1] == ["submit"] and "--" in argv:
            argv = argv[argv.index("--") + 1:]
        try:
            parser.parse_args(argv)
        except SystemExit:                                    # --help
            pass
        except Exception as e:                                # the parser's one-line UsageError
            bad.append(f"{page}: {line.strip()} ({e})")
    for page in PAGES:
        for script in re.findall(r"(?:python|bash) ((?:benchmarks|scripts|\.ci)/\S+?)(?=[`\s)]|$)", page.read_text()):
            if not (REPO / script).is_file():
                bad.append(f"{page.name}: no file {script}")
    assert not bad, "\n".join(bad)


def test_every_command_is_in_the_cli_reference():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    reference = (REPO / "docs" / "cli.md").read_text()
    missing = [name for name in sub.choices if f"| `saerec {name}" not in reference]
    assert not missing, f"docs/cli.md has no row for: {', '.join(missing)}"


def yaml_value(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("...\n").strip()


def test_configuration_reference_lists_every_key_and_default():
    """docs/configuration.md has one table per config section whose rows are exactly the section's
    keys, each with its default as YAML."""
    text = (REPO / "docs" / "configuration.md").read_text()
    documented: dict[str, dict[str, str]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        m = re.match(r"\| `([a-z_0-9]+)` \| `([^`]*)` \|", line)
        if m and section:
            documented.setdefault(section, {})[m.group(1)] = m.group(2)
    cfg = RunConfig()
    actual = {s.name: {f.name: yaml_value(getattr(getattr(cfg, s.name), f.name))
                       for f in dataclasses.fields(getattr(cfg, s.name))} for s in dataclasses.fields(cfg)}
    assert documented == actual


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_until_served(argv: list[str], server: subprocess.Popen, capsys, seconds: float = 300):
    """``saerec`` ``argv`` in this process, retried while the backgrounded server is starting."""
    deadline = time.time() + seconds
    while True:
        rc = main(argv)
        out = capsys.readouterr()
        if rc == 0 or time.time() > deadline or server.poll() is not None:
            return rc, out
        time.sleep(1)


def test_quick_start_runs_as_written(ray_session, tmp_path, monkeypatch, capsys):
    """Every quick-start line in order: foreground commands in this process through the console
    script's entry point (on the session's Ray runtime); the backgrounded ``saerec serve`` as the
    real console script, joined to the same runtime. Then the serving guide's ``saerec client`` lines
    and its Python example against the same service."""
    from ray import serve

    steps = quick_start()
    assert [s[:2] for s in steps] == [["saerec", c] for c in ("run", "features", "steer", "serve", "client")], steps
    monkeypatch.chdir(tmp_path)
    port, log = str(free_port()), tmp_path / "serve.log"

    def with_port(text: str) -> str:
        return port if text == "9000" else text.replace(":9000", ":" + port)

    server = None
    try:
        for words in steps:
            argv = [with_port(w) for w in words[1:]]
            if argv[-1] == "&":
                exe = [shutil.which("saerec")] if shutil.which("saerec") else [sys.executable, "-m", "saerec"]
                env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
                with open(log, "w") as f:
                    server = subprocess.Popen(exe + argv[:-1] + ["--http-port", str(free_port())], env=env,
                                              stdout=f, stderr=subprocess.STDOUT)
                continue
            if argv[0] == "run":
                argv += TINY
            rc, out = run_until_served(argv, server, capsys) if server else (main(argv), capsys.readouterr())
            served = f"; saerec serve (exit {server.poll()}) logged: {log.read_text()[-3000:]}" if server else ""
            assert rc == 0, f"`saerec {' '.join(argv)}` exited {rc}: {out.err[-2000:]}{served}"
            assert "Sci-Fi" in out.out, out.out                # the feature's label, the edit, the genres
            if argv[0] in ("steer", "client"):
                assert out.out.count("\n") >= 10, out.out     # a top-10 list (and "before" and "after")

        serving = (REPO / "docs" / "serving.md").read_text()
        clients = [[with_port(w) for w in words_of(line)[1:]] for line in shell_lines(serving)
                   if words_of(line)[:2] == ["saerec", "client"]]
        assert clients
        for argv in clients:
            rc, out = main(argv), capsys.readouterr()
            assert rc == 0, f"docs/serving.md: `saerec {' '.join(argv)}` exited {rc}: {out.err}"
        (example,) = blocks(serving, "python")
        exec(compile(with_port(example), "docs/serving.md", "exec"), {})
        printed = capsys.readouterr().out
        assert printed.count("\n") == 10, printed                # the example prints one line per item
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            serve.shutdown()
