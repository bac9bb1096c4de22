"""``make bench``'s pieces (the benchmark itself prints figures and is not a test)."""

from __future__ import annotations

import pytest

from radstream_triton import bench
from tests.conftest import REPO_ROOT


def test_stage_table_shows_both_paths_with_a_ratio(ct_bytes):
    lines: list[str] = []
    bench.stage_table({"CT_small": ct_bytes}, repeats=1, out=lines.append)
    assert lines[0].startswith("| image | path | decode | reduce | lut | window | resize | total ms | images/s/core |")
    reference, fast = lines[2], lines[3]
    assert reference.startswith("| CT_small | reference |") and reference.endswith("| 1.0x |")
    assert fast.startswith("| CT_small | fast |") and fast.endswith("x** |")


def test_update_docs_replaces_only_the_marked_block(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{bench.DOC_BEGIN}\nold figures\n{bench.DOC_END}\noutro\n")
    bench.update_docs(doc, "new figures")
    assert doc.read_text() == f"intro\n{bench.DOC_BEGIN}\nnew figures\n{bench.DOC_END}\noutro\n"
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no block")
    with pytest.raises(SystemExit, match="has no"):
        bench.update_docs(unmarked, "x")


def test_performance_doc_holds_the_bench_output():
    text = (REPO_ROOT / "docs" / "performance.md").read_text()
    block = text.split(bench.DOC_BEGIN, 1)[1].split(bench.DOC_END, 1)[0]
    assert "| RG1_UNCR (CR 1955x1841, uncompressed) | fast |" in block
    assert "| concurrency | reference req/s |" in block
    assert "make bench" in text
