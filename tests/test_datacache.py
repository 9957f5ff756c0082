"""The disk cache of data built from our files (the knowledge base, the code tables): an edit
to a source file, or the same files somewhere else, is never answered from an older build."""

from __future__ import annotations

import os
import shutil

import pytest

from bot.datacache import cached
from bot.knowledge import load_articles
from bot.resources import knowledge_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WHYFAILED_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_build_is_reused_until_its_source_changes(tmp_path, cache):
    source = tmp_path / "table.txt"
    source.write_text("one")
    builds = []

    def build():
        builds.append(source.read_text())
        return source.read_text().upper()

    assert cached("table", [source], build) == "ONE"
    assert cached("table", [source], build) == "ONE"
    assert builds == ["one"]  # the second answer came from the cache
    source.write_text("two")
    assert cached("table", [source], build) == "TWO"
    assert builds == ["one", "two"]


def test_a_corrupt_cache_file_is_built_again(tmp_path, cache):
    source = tmp_path / "table.txt"
    source.write_text("one")
    cached("table", [source], lambda: "built")
    for entry in cache.iterdir():
        entry.write_bytes(b"not a pickle")
    assert cached("table", [source], lambda: "built again") == "built again"


def test_an_edited_knowledge_article_is_read_again(tmp_path, cache):
    folder = tmp_path / "knowledge"
    shutil.copytree(knowledge_dir(), folder)
    assert load_articles(folder)["mailbox-full"].title == load_articles()["mailbox-full"].title
    article = folder / "mailbox-full.md"
    text = article.read_text()
    title = load_articles(folder)["mailbox-full"].title
    article.write_text(text.replace(f"title: {title}", "title: The mailbox is over its quota", 1))
    load_articles.cache_clear()  # the process's own memo; the disk cache is what is tested
    assert load_articles(folder)["mailbox-full"].title == "The mailbox is over its quota"


def test_the_same_articles_in_another_folder_are_their_own(tmp_path, cache):
    for name in ("a", "b"):
        shutil.copytree(knowledge_dir(), tmp_path / name)
        assert load_articles(tmp_path / name)["unknown"].path == tmp_path / name / "unknown.md"


def test_a_cache_file_with_one_byte_changed_is_not_read(tmp_path, cache):
    # a damaged letter inside a pickled string still unpickles: the file's digest catches it
    source = tmp_path / "table.txt"
    source.write_text("one")
    cached("table", [source], lambda: {"regex": "[a-z]+@example[.]com"})
    (entry,) = cache.iterdir()
    data = entry.read_bytes()
    at = data.rindex(b"example")
    entry.write_bytes(data[:at] + b"exbmple" + data[at + len(b"example") :])
    assert cached("table", [source], lambda: "built again") == "built again"


def test_regexes_derived_from_a_grammar_follow_the_code_that_derives_them(tmp_path, cache):
    from bot.parse.grammars import _lark_files, derived_regexes

    code = tmp_path / "paths.py"
    code.write_text("PATH = 1")
    builds = []

    def derive():
        builds.append(code.read_text())
        return {"path": code.read_text()}

    assert derived_regexes("paths", derive, str(code)) == {"path": "PATH = 1"}
    assert derived_regexes("paths", derive, str(code)) == {"path": "PATH = 1"}
    assert builds == ["PATH = 1"]
    code.write_text("PATH = 2")  # Lark's version is in the key the same way, the grammars by their digest
    assert derived_regexes("paths", derive, str(code)) == {"path": "PATH = 2"}
    assert [p.parts[-2:] for p in _lark_files()] == [("lark", "__init__.py")]


@pytest.mark.parametrize(
    "tmpdir",
    [None, "", "{tmp}/writable", "{tmp}/missing", "{tmp}/a-file", "relative-folder", "{tmp}/writable/../writable/"],
)
def test_the_default_folder_is_the_one_tempfile_chooses(tmp_path, monkeypatch, tmpdir):
    import tempfile

    from bot import datacache

    (tmp_path / "writable").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "relative-folder").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    if tmpdir is not None:
        monkeypatch.setenv("TMPDIR", tmpdir.replace("{tmp}", str(tmp_path)))
    assert datacache._first_writable(datacache._candidates()) == tempfile._get_default_tempdir()
    assert not list((tmp_path / "writable").iterdir())  # the probe file is gone


def test_the_default_folder_without_tempfile_loaded_is_its_choice(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from bot import datacache; folder = datacache.cache_dir(); "
        "assert 'tempfile' not in sys.modules; import tempfile, pathlib; "
        "assert folder == pathlib.Path(tempfile.gettempdir()) / 'whyfailed-lark', folder"
    )
    environment = {k: v for k, v in os.environ.items() if k != "WHYFAILED_CACHE_DIR"}
    subprocess.run([sys.executable, "-c", code], check=True, env={**environment, "TMPDIR": str(tmp_path)})
