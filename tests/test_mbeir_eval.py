"""End to end: ``moair eval mbeir`` on a tiny M-BEIR-format set built from the real sample photos."""

import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from retriever.mbeir.data import Candidate, read_jsonl
from retriever.mbeir.evaluate import evaluate

PHOTOS = {
    "9:1": "dog",
    "9:2": "chelsea",
    "9:3": "giraffe",
    "9:4": "horses",
    "9:5": "eagle",
    "9:6": "kite",
    "9:7": "coffee",
}
CAPTIONS = {  # mscoco_task3 text candidates, one per photo
    "9:101": "A dog sits next to a bicycle in front of a car.",
    "9:102": "A cat with striped fur looks at the camera.",
    "9:103": "Two giraffes and a zebra stand among trees.",
    "9:104": "Horses graze in a field.",
    "9:105": "A bald eagle perches on a branch.",
    "9:106": "People fly kites on a beach.",
    "9:107": "A cup of coffee on a saucer.",
}
TEXT_TO_IMAGE = [
    ("a dog next to a bicycle", "9:1"),
    ("a cat", "9:2"),
    ("two giraffes and a zebra", "9:3"),
    ("horses in a field", "9:4"),
    ("an eagle", "9:5"),
    ("people flying kites on a beach", "9:6"),
]
INSTRUCTIONS = (
    "query_modality\tcand_modality\tdataset\tdataset_id\tprompt_1\tprompt_2\n"
    "text\timage\tMSCOCO\t9\tIdentify the image showcasing the described everyday scene.\tFind a matching image.\n"
    "image\ttext\tMSCOCO\t9\tFind a caption for the shown image.\t\n"
    "image\timage\tNIGHTS\t4\tFind a day-to-day image that looks similar to the provided image.\t\n"
)


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def query(qid, modality, positive, text=None, image=None):
    return {
        "qid": qid,
        "query_txt": text,
        "query_img_path": image,
        "query_modality": modality,
        "query_src_content": None,
        "pos_cand_list": [positive],
        "neg_cand_list": [],
    }


@pytest.fixture(scope="module")
def mbeir_root(tmp_path_factory, photo):
    root = tmp_path_factory.mktemp("mbeir") / "M-BEIR"
    images = root / "mbeir_images" / "samples"
    images.mkdir(parents=True)
    image_of = {}
    for did, name in PHOTOS.items():
        shutil.copy2(photo(name), images)
        image_of[did] = f"mbeir_images/samples/{photo(name).name}"
    image_cands = [
        {"did": did, "txt": None, "img_path": path, "modality": "image", "src_content": None}
        for did, path in image_of.items()
    ]
    text_cands = [{"did": did, "txt": txt, "img_path": None, "modality": "text"} for did, txt in CAPTIONS.items()]
    # nights_task4 (image -> image): crops of three photos; the pool is the full photos.
    crops = []
    for n, (did, box) in enumerate(
        (("9:1", (100, 100, 500, 500)), ("9:4", (200, 50, 700, 450)), ("9:2", (50, 20, 400, 280)))
    ):
        crop = images / f"crop-{n}.jpg"
        Image.open(root / image_of[did]).convert("RGB").crop(box).save(crop, quality=85)
        crops.append(query(f"4:{n}", "image", f"4:{did.split(':')[1]}", image=f"mbeir_images/samples/{crop.name}"))
    nights_pool = [{**c, "did": "4:" + c["did"].split(":")[1]} for c in image_cands]

    write_jsonl(root / "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl", image_cands)
    write_jsonl(root / "cand_pool/local/mbeir_mscoco_task3_test_cand_pool.jsonl", text_cands)
    write_jsonl(root / "cand_pool/local/mbeir_nights_task4_cand_pool.jsonl", nights_pool)
    write_jsonl(root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl", image_cands + text_cands + nights_pool)
    t2i = [query(f"9:{n}", "text", did, text=text) for n, (text, did) in enumerate(TEXT_TO_IMAGE)]
    i2t = [
        query(f"9:{100 + int(did.split(':')[1])}", "image", f"9:{100 + int(did.split(':')[1])}", image=path)
        for did, path in image_of.items()
    ]
    write_jsonl(root / "query/test/mbeir_mscoco_task0_test.jsonl", t2i)
    write_jsonl(root / "query/test/mbeir_mscoco_task3_test.jsonl", i2t)
    write_jsonl(root / "query/test/mbeir_nights_task4_test.jsonl", crops)
    (root / "qrels/test").mkdir(parents=True)
    for name, queries, task_id in (("mscoco_task0", t2i, 0), ("mscoco_task3", i2t, 3), ("nights_task4", crops, 4)):
        (root / f"qrels/test/mbeir_{name}_test_qrels.txt").write_text(
            "".join(f"{q['qid']} 0 {q['pos_cand_list'][0]} 1 {task_id}\n" for q in queries)
        )
    (root / "instructions").mkdir()
    (root / "instructions/query_instructions.tsv").write_text(INSTRUCTIONS)
    return root


TASKS = ["mscoco_task0", "mscoco_task3", "nights_task4"]


def test_local_pools_text_to_image_image_to_text_and_image_to_image(mbeir_root, tmp_path):
    result = evaluate(mbeir_root, tmp_path / "work", tasks=TASKS, pool="local")
    scores = {f"{t.dataset}_task{t.task_id}": t.recall for t in result.tasks}
    assert scores["mscoco_task0"]["Recall@5"] == 100.0 and scores["mscoco_task0"]["Recall@1"] >= 66.67
    assert scores["nights_task4"]["Recall@1"] == 100.0  # a crop finds its source photo
    assert scores["mscoco_task3"]["Recall@10"] == 100.0  # the pool has only 7 captions
    assert result.average["Recall@10"] == 100.0
    assert [t.queries for t in result.tasks] == [6, 7, 3]


def test_instructions_steer_and_are_not_matched_as_content(mbeir_root, tmp_path):
    """UniIR's instruction in front of every query gives the same rankings as none: it is taken
    out of the embedded text (before, image->text fell from Recall@1 100 to 14.3 with it)."""
    with_instructions = evaluate(mbeir_root, tmp_path / "work", tasks=TASKS, pool="local", ks=[1, 5])
    without = evaluate(mbeir_root, tmp_path / "work", tasks=TASKS, pool="local", ks=[1, 5], instruct=False)
    assert [t.recall for t in with_instructions.tasks] == [t.recall for t in without.tasks]
    assert with_instructions.tasks[1].recall["Recall@1"] == 100.0  # image -> text (mscoco_task3)


def test_union_pool_never_returns_a_candidate_of_the_wrong_modality(mbeir_root, tmp_path):
    result = evaluate(
        mbeir_root, tmp_path / "work", tasks=["mscoco_task0", "mscoco_task3"], pool="global", ks=[1, 5, 20]
    )
    union = {
        c.did: c.modality
        for c in read_jsonl(mbeir_root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl", Candidate)
    }
    (task0_id, t2i), (task3_id, i2t) = result.runs.values()
    assert (task0_id, task3_id) == (0, 3)
    assert {union[did] for hits in t2i.values() for did, _ in hits} == {"image"}
    assert {union[did] for hits in i2t.values() for did, _ in hits} == {"text"}
    assert all(len(hits) == 14 for hits in t2i.values())  # 7 mscoco + 7 nights images, no texts
    assert result.tasks[0].recall["Recall@20"] == 100.0


def test_cli_writes_json_markdown_and_run_file_and_a_rerun_resumes_from_the_cache(mbeir_root, tmp_path):
    work = tmp_path / "work"
    args = [
        "eval",
        "mbeir",
        "--root",
        str(mbeir_root),
        "--work",
        str(work),
        "--tasks",
        ",".join(TASKS),
        "--json",
        str(tmp_path / "out.json"),
        "--run-file",
        str(tmp_path / "out.run"),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "| **average** |" in first.output
    saved = json.loads((tmp_path / "out.json").read_text())
    assert [t["task"] for t in saved["tasks"]] == TASKS and set(saved["average"]) == {
        "Recall@1",
        "Recall@5",
        "Recall@10",
    }
    assert (work / "mbeir-test-local.md").read_text() == first.output.strip() + "\n"
    lines = (tmp_path / "out.run").read_text().splitlines()
    qid, q0, did, rank, score, run, task_id = lines[0].split()
    assert (q0, rank, run, task_id) == ("Q0", "1", "mbeir_mscoco_task0_single_pool_test_k10", "0")

    # A rerun reads every ranking from WORK/runs and indexes nothing.
    for cached in (work / "pools").iterdir():
        shutil.rmtree(cached)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output == first.output
    assert not any((work / "pools").iterdir())


def test_a_missing_query_image_is_a_clear_error(mbeir_root, tmp_path):
    broken = tmp_path / "M-BEIR"
    shutil.copytree(mbeir_root, broken)
    (broken / "mbeir_images/samples/crop-1.jpg").unlink()
    with pytest.raises(Exception, match=r"mbeir_nights_task4_test.jsonl: query 4:1: query image: .*not found"):
        evaluate(broken, tmp_path / "work", tasks=["nights_task4"])


def test_an_interrupted_pool_index_is_completed_not_rebuilt(mbeir_root, tmp_path):
    """What a killed run leaves (a pool index with some candidates committed) is reused."""
    from indexer.records import Entry
    from retriever import Engine

    work = tmp_path / "work"
    pool_file = mbeir_root / "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"
    candidates = read_jsonl(pool_file, Candidate)
    with Engine.open(work / "pools" / f"{pool_file.stem}.moair", create=True) as engine:
        engine.add_entries([Entry(key=c.did, image=mbeir_root / c.img_path) for c in candidates[:3]])
    result = evaluate(mbeir_root, work, tasks=["mscoco_task0"])
    report = result.pool_reports[str(pool_file)]
    assert (report.unchanged, report.added) == (3, len(candidates) - 3)
    assert result.tasks[0].recall["Recall@5"] == 100.0
