"""M-BEIR records, read exactly as UniIR reads them, and UniIR's Recall@k (a hit rate)."""

import io
import json

import pytest

from retriever.mbeir.data import (
    Candidate,
    Layout,
    MbeirFormatError,
    Qrels,
    Query,
    TaskName,
    candidate_modality,
    format_string,
    instruction_for,
    query_text,
    read_instructions,
    read_jsonl,
    read_qrels,
)
from retriever.mbeir.metrics import TaskScore, average, hit_at_k, recall_at_ks, run_id, write_run

# -- the metric, against hand-computed cases ---------------------------------------------------


def qrels(**relevant) -> Qrels:
    return Qrels(relevant={qid.replace("_", ":"): dids for qid, dids in relevant.items()})


def test_recall_is_a_hit_rate_averaged_over_queries_and_rounded_like_uniir():
    judged = qrels(q_1=["9:1"], q_2=["9:7", "9:8"], q_3=[])
    ranked = {
        "q:1": ["9:1", "9:2", "9:3"],  # hit at rank 1
        "q:2": ["9:2", "9:3", "9:8", "9:7"],  # first relevant at rank 3; two relevant count once
        "q:3": ["9:1"],  # no relevant did: always 0
    }
    assert recall_at_ks(ranked, judged, [1, 3, 10]) == {"Recall@1": 33.33, "Recall@3": 66.67, "Recall@10": 66.67}


def test_a_query_missing_from_the_qrels_counts_as_a_miss():
    assert recall_at_ks({"q:1": ["9:1"], "q:9": ["9:1"]}, qrels(q_1=["9:1"]), [1]) == {"Recall@1": 50.0}


def test_ties_are_decided_by_rank_not_by_score():
    """Two candidates with the same score: the run's order decides, as in UniIR (FAISS's order)."""
    ranked = ["9:5", "9:1"]  # both scored 0.5; the relevant one came second
    assert hit_at_k(["9:1"], ranked, 1) == 0.0
    assert hit_at_k(["9:1"], ranked, 2) == 1.0


def test_duplicates_in_qrels_or_results_count_once():
    judged = qrels(q_1=["9:1", "9:1"])
    assert recall_at_ks({"q:1": ["9:1", "9:1", "9:2"]}, judged, [1, 2]) == {"Recall@1": 100.0, "Recall@2": 100.0}


def test_k_larger_than_the_pool():
    assert hit_at_k(["9:2"], ["9:1", "9:2"], 50) == 1.0
    assert hit_at_k(["9:3"], ["9:1", "9:2"], 50) == 0.0
    assert recall_at_ks({}, qrels(), [5]) == {"Recall@5": 0.0}


def test_average_is_unweighted_over_tasks_and_only_over_shared_metrics():
    scores = [
        TaskScore("mscoco", 0, "local", 1000, {"Recall@1": 10.0, "Recall@5": 30.0, "Recall@10": 40.0}),
        TaskScore("cirr", 7, "local", 10, {"Recall@1": 20.0, "Recall@5": 50.0, "Recall@10": 60.0}),
        TaskScore("fashioniq", 7, "local", 10, {"Recall@10": 5.0, "Recall@20": 9.0, "Recall@50": 20.0}),
    ]
    assert average(scores[:2]) == {"Recall@1": 15.0, "Recall@5": 40.0, "Recall@10": 50.0}
    assert average(scores) == {"Recall@10": 35.0}


def test_run_file_lines_are_uniir_trec_lines():
    out = io.StringIO()
    name = run_id("mscoco_task0", "local", "test", 10)
    write_run(out, {"9:1": [("9:5", 0.91), ("9:2", 0.5)]}, name, 0)
    assert name == "mbeir_mscoco_task0_single_pool_test_k10"
    assert run_id("mscoco_task0", "global", "test", 10) == "mbeir_mscoco_task0_union_pool_test_k10"
    assert out.getvalue().splitlines() == [
        "9:1 Q0 9:5 1 0.91 mbeir_mscoco_task0_single_pool_test_k10 0",
        "9:1 Q0 9:2 2 0.5 mbeir_mscoco_task0_single_pool_test_k10 0",
    ]


# -- the loader, on files in the exact published format ----------------------------------------

QUERIES = [
    # text -> image (query image null), with UniIR's optional task_id field
    {
        "qid": "9:1",
        "query_txt": "A dog next to a bicycle",
        "query_img_path": None,
        "query_modality": "text",
        "query_src_content": None,
        "pos_cand_list": ["9:10"],
        "neg_cand_list": [],
        "task_id": 0,
    },
    # image -> text (query text null), src content as a JSON string
    {
        "qid": "9:2",
        "query_txt": None,
        "query_img_path": "mbeir_images/mscoco_images/val2014/dog.jpg",
        "query_modality": "image",
        "query_src_content": json.dumps({"id": 42}),
        "pos_cand_list": ["9:11"],
        "neg_cand_list": [],
    },
    # OVEN-style image,text -> image,text, listing an InfoSeek (6:) positive before its own
    {
        "qid": "5:3",
        "query_txt": "what is this building?",
        "query_img_path": "mbeir_images/oven_images/a.jpg",
        "query_modality": "image,text",
        "query_src_content": None,
        "pos_cand_list": ["6:30", "5:31"],
        "neg_cand_list": ["5:32"],
    },
]
CANDIDATES = [
    {
        "did": "9:10",
        "txt": None,
        "img_path": "mbeir_images/mscoco_images/val2014/dog.jpg",
        "modality": "image",
        "src_content": None,
    },
    {"did": "9:11", "txt": "a dog sits by a bike", "img_path": None, "modality": "text"},  # no src_content key
    {"did": "6:30", "txt": "Some tower", "img_path": None, "modality": "text", "src_content": None},
    {
        "did": "5:31",
        "txt": "Eiffel Tower",
        "img_path": "mbeir_images/oven_images/b.jpg",
        "modality": "image,text",
        "src_content": None,
    },
]
INSTRUCTIONS = (
    "query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\tprompt_3\n"
    "text\timage\tMSCOCO\t9\tIdentify the image showcasing the described everyday scene.\t"
    "retrieve an image that matches the caption\t\n"  # an empty cell at the end
    "image\ttext\tMSCOCO\t9\tfind a caption for the shown image\t\t\t\n"  # trailing tabs
    'image,text\timage,text\tOVEN\t5\t"Retrieve a Wikipedia image-description pair that identifies the building"\n'
)
QRELS = "9:1 0 9:10 1 0\n9:2 0 9:11 1 3\n9:2 0 9:99 0 3\n5:3 0 5:31 1 8\n5:3 0 6:30 1 8\n"


@pytest.fixture
def mbeir_root(tmp_path):
    root = tmp_path / "M-BEIR"
    for folder in ("query/test", "cand_pool/local", "qrels/test", "instructions"):
        (root / folder).mkdir(parents=True)
    (root / "query/test/mbeir_mscoco_task0_test.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n\n")
    (root / "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl").write_text(
        "\n".join(json.dumps(c) for c in CANDIDATES) + "\n"
    )
    (root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").write_text(QRELS)
    (root / "instructions/query_instructions.tsv").write_text(INSTRUCTIONS)
    return Layout(root)


def test_loader_reads_the_published_format_with_its_nulls_and_quirks(mbeir_root):
    task = TaskName.parse("mscoco_task0")
    queries = read_jsonl(mbeir_root.queries(task, "test"), Query)
    pool = {c.did: c for c in read_jsonl(mbeir_root.local_pool(task, "test"), Candidate)}
    assert [q.qid for q in queries] == ["9:1", "9:2", "5:3"]
    assert queries[0].query_img_path is None and queries[0].task_id == 0
    assert queries[1].query_txt is None and json.loads(queries[1].query_src_content) == {"id": 42}
    assert queries[2].query_modality == "image,text" and pool["5:31"].modality == "image,text"
    assert pool["9:11"].src_content is None

    judged = read_qrels(mbeir_root.qrels(task, "test"))
    assert judged.relevant == {"9:1": ["9:10"], "9:2": ["9:11"], "5:3": ["5:31", "6:30"]}  # relevance 0 dropped
    assert judged.task_of == {"9:1": 0, "9:2": 3, "5:3": 8}

    instructions = read_instructions(mbeir_root.instructions())
    assert instructions[("9", "text", "image")] == [
        "Identify the image showcasing the described everyday scene.",
        "retrieve an image that matches the caption",
    ]
    assert instructions[("9", "image", "text")] == ["find a caption for the shown image"]


def test_query_text_is_uniirs_instruction_plus_text(mbeir_root):
    task = TaskName.parse("mscoco_task0")
    queries = read_jsonl(mbeir_root.queries(task, "test"), Query)
    pool = {c.did: c for c in read_jsonl(mbeir_root.local_pool(task, "test"), Candidate)}
    instructions = read_instructions(mbeir_root.instructions())

    text_query, image_query, oven_query = queries
    assert candidate_modality(text_query, pool) == "image"
    assert candidate_modality(oven_query, pool) == "image,text"  # its own dataset's positive, not InfoSeek's
    assert candidate_modality(oven_query, {}, TaskName.parse("oven_task8")) == "image,text"  # positives not in the pool
    with pytest.raises(Exception, match="none of its positives is in the candidate pool"):
        candidate_modality(oven_query, {})
    assert query_text(text_query, instruction_for(text_query, "image", instructions)) == (
        "Identify the image showcasing the described everyday scene. A dog next to a bicycle."
    )
    assert (
        query_text(image_query, instruction_for(image_query, "text", instructions))
        == "Find a caption for the shown image."
    )
    assert query_text(oven_query, instruction_for(oven_query, "image,text", instructions)) == (
        "Retrieve a Wikipedia image-description pair that identifies the building. what is this building?"
    )
    assert query_text(text_query, None) == "A dog next to a bicycle."  # --no-instruct
    assert query_text(image_query, None) == ""


def test_format_string_matches_uniir():
    assert format_string('  "a photo of a cat"\r\n') == "A photo of a cat."
    assert format_string("what is it?") == "What is it?"
    assert format_string("Done!") == "Done!"
    assert format_string(None) == ""


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"qid": "9:1", "query_modality": "video", "pos_cand_list": []}), "query_modality"),
        (json.dumps({"query_modality": "text"}), "qid"),
    ],
)
def test_bad_query_record_names_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "mbeir_mscoco_task0_test.jsonl"
    path.write_text(json.dumps(QUERIES[0]) + "\n" + line + "\n")
    with pytest.raises(MbeirFormatError, match=rf"mbeir_mscoco_task0_test.jsonl:2: .*{message}"):
        read_jsonl(path, Query)


def test_bad_qrels_and_instruction_lines_name_the_file_and_line(tmp_path):
    bad_qrels = tmp_path / "q.txt"
    bad_qrels.write_text("9:1 0 9:10 1 0\n9:2 0 9:11 yes 3\n")
    with pytest.raises(MbeirFormatError, match=r"q.txt:2: expected 'qid 0 did relevance task_id'"):
        read_qrels(bad_qrels)
    bad_tsv = tmp_path / "i.tsv"
    bad_tsv.write_text("header\ntext\timage\tMSCOCO\n")
    with pytest.raises(MbeirFormatError, match=r"i.tsv:2: "):
        read_instructions(bad_tsv)
    with pytest.raises(MbeirFormatError, match="no such file"):
        read_qrels(tmp_path / "missing.txt")


def test_task_names_and_pool_paths(tmp_path):
    layout = Layout(tmp_path)
    assert TaskName.parse("FashionIQ_task7").ks == (10, 20, 50)
    assert TaskName.parse("cirr_task7").ks == (1, 5, 10)
    assert layout.local_pool(TaskName.parse("mscoco_task3"), "test").name == "mbeir_mscoco_task3_test_cand_pool.jsonl"
    assert layout.local_pool(TaskName.parse("mscoco_task3"), "val").name == "mbeir_mscoco_task3_cand_pool.jsonl"
    assert layout.union_pool("test").name == "mbeir_union_test_cand_pool.jsonl"
    with pytest.raises(Exception, match="unknown M-BEIR task 'coco_task0'"):
        TaskName.parse("coco_task0")


def test_the_development_set_is_valid_mbeir(tmp_path):
    """benchmarks/bench_quality.py writes the development set (benchmarks/devset.py) as an M-BEIR
    folder that the reader loads; every positive is in its pool, every image file is there."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from bench_quality import SPLITS, TASKS, write_set
    from devset import all_queries, build_images

    queries = write_set(tmp_path / "M-BEIR", build_images(tmp_path / "images"))
    layout = Layout(tmp_path / "M-BEIR")
    seen = set()
    for name, _, _ in TASKS.values():
        task = TaskName.parse(name)
        for split in SPLITS.values():
            pool = {c.did: c for c in read_jsonl(layout.local_pool(task, split), Candidate)}
            judged = read_qrels(layout.qrels(task, split))
            for q in read_jsonl(layout.queries(task, split), Query):
                assert q.pos_cand_list and all(did in pool for did in q.pos_cand_list)
                assert judged.relevant[q.qid] == q.pos_cand_list
                for path in (q.query_img_path, *(pool[d].img_path for d in q.pos_cand_list)):
                    assert path is None or (layout.root / path).is_file()
                assert SPLITS[queries[q.qid].split] == split
                seen.add(q.qid)
    assert seen == set(queries) and len(queries) == len(all_queries()) > 120
    assert {q.split for q in queries.values()} == {"dev", "test"}
