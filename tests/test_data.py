import json

import pytest

from prime_trl.data import (
    CODE_SUFFIX,
    EURUS_SYSTEM_PROMPT,
    MATH_SUFFIX,
    SHIPPED,
    BadRowError,
    detect_schema,
    gsm8k_final_answer,
    load_prime_dataset,
)
from prime_trl.verifiers.math_verifier import last_boxed


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)


def user_text(row):
    return [m for m in row["prompt"] if m["role"] == "user"][-1]["content"]


# --- each schema loads from the shipped rows -------------------------------------------------


def test_eurus_rows_load_with_math_and_code():
    ds = load_prime_dataset(SHIPPED["eurus"])
    assert ds.column_names == ["prompt", "ground_truth", "ability", "data_source"]
    raw = read_jsonl(SHIPPED["eurus"])
    assert len(ds) == len(raw)
    assert ds["ground_truth"] == [r["reward_model"]["ground_truth"] for r in raw]
    assert ds["ability"] == [r["ability"] for r in raw]
    assert ds["data_source"] == [r["data_source"] for r in raw]
    assert ds[0]["prompt"][0] == {"role": "system", "content": EURUS_SYSTEM_PROMPT}
    code = [row for row in ds if row["ability"] == "code"]
    assert code and all(set(json.loads(row["ground_truth"])) == {"inputs", "outputs"} for row in code)


def test_gsm8k_answer_after_hashes():
    ds = load_prime_dataset(SHIPPED["gsm8k"])
    assert ds["ground_truth"] == ["29", "1500", "30"]  # "#### 1,500" loses its separator
    assert set(ds["ability"]) == {"math"} and set(ds["data_source"]) == {"gsm8k"}
    assert [m["role"] for m in ds[0]["prompt"]] == ["user"]


def test_math_answer_from_last_boxed():
    ds = load_prime_dataset(SHIPPED["math"])
    assert ds["ground_truth"] == ["7", "\\frac{5}{6}", "5"]
    assert set(ds["data_source"]) == {"math"}


@pytest.mark.parametrize("schema", ["eurus", "gsm8k", "math"])
def test_auto_detection_matches_explicit_schema(schema):
    assert load_prime_dataset(SHIPPED[schema]).to_list() == load_prime_dataset(SHIPPED[schema], schema=schema).to_list()


def test_detect_schema_rejects_unknown_columns():
    with pytest.raises(ValueError, match="schema='auto' found no schema"):
        detect_schema(["text", "label"])


def test_extractors():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\fbox{3}") == "3"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None
    assert gsm8k_final_answer("x\n#### 2,048") == "2048"
    assert gsm8k_final_answer("no marker") is None


# Solutions where the loader's old brace counter and the math verifier disagreed; the loader now reads
# them as the verifier reads a completion, so a reference answer means what a generated one means.
@pytest.mark.parametrize("solution, answer", [
    ("So it is $\\boxed 7$.", "7"),  # a box without braces: the old counter found no answer
    ("It is \\boxed{\\left\\{ 2 \\right.}", "\\left\\{ 2 \\right."),  # `\\{` is a literal brace
    ("Then \\boxed{ 5 } and \\boxed{unclosed", "5"),  # a truncated last box: the complete one before it
])
def test_math_reference_answer_is_read_like_the_verifier_reads_completions(solution, answer, tmp_path):
    from prime_trl.verifiers.math_verifier import extract_answer

    path = write_jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": solution}])
    assert load_prime_dataset(path)["ground_truth"] == [answer]
    assert extract_answer(solution) == answer


def test_code_rows_need_at_least_one_apps_test(tmp_path):
    from prime_trl.verifiers.code_verifier import parse_tests

    rows = read_jsonl(SHIPPED["eurus"])
    code = next(r for r in rows if r["ability"] == "code")
    code["reward_model"]["ground_truth"] = json.dumps({"inputs": [], "outputs": []})
    assert parse_tests(code["reward_model"]["ground_truth"]) == {"inputs": [], "outputs": []}  # scores 0.0
    with pytest.raises(BadRowError, match="field 'reward_model.ground_truth' has no test cases"):
        load_prime_dataset(write_jsonl(tmp_path / "code.jsonl", [code]))
    code["reward_model"]["ground_truth"] = json.dumps({"inputs": ["1"], "outputs": []})
    with pytest.raises(BadRowError, match="has unequal numbers of inputs and outputs"):
        load_prime_dataset(write_jsonl(tmp_path / "code.jsonl", [code]))


# --- prompt options -----------------------------------------------------------------------------


def test_suffix_option():
    with_suffix = load_prime_dataset(SHIPPED["gsm8k"])
    without = load_prime_dataset(SHIPPED["gsm8k"], add_suffix=False)
    for a, b in zip(with_suffix, without):
        assert user_text(a) == user_text(b) + MATH_SUFFIX


def test_suffix_per_ability_and_not_doubled():
    raw = read_jsonl(SHIPPED["eurus"])
    ds = load_prime_dataset(SHIPPED["eurus"])
    for raw_row, row in zip(raw, ds):
        suffix = {"math": MATH_SUFFIX, "code": CODE_SUFFIX}[row["ability"]]
        assert user_text(row).count(suffix.strip()) == 1
    # The first shipped row already ends with the math suffix: it is kept as is.
    assert user_text(ds[0]) == raw[0]["prompt"][1]["content"]


def test_system_prompt_option():
    ds = load_prime_dataset(SHIPPED["math"], system_prompt="Be brief.")
    assert ds[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    replaced = load_prime_dataset(SHIPPED["eurus"], system_prompt="Be brief.")
    assert [m["content"] for m in replaced[0]["prompt"] if m["role"] == "system"] == ["Be brief."]
    removed = load_prime_dataset(SHIPPED["eurus"], system_prompt="")
    assert all(m["role"] != "system" for m in removed[0]["prompt"])


# --- bad rows: an error naming row and field, or skipped and counted ----------------------------


def _eurus_bad(rows):
    rows[1]["reward_model"]["ground_truth"] = "   "
    rows[2]["ability"] = "chemistry"
    del rows[3]["reward_model"]["ground_truth"]
    rows[4]["reward_model"]["ground_truth"] = "print(1)"  # a code row whose tests are not APPS JSON
    return rows


BAD_CASES = {
    # name: (schema, mutate shipped rows, expected error for the first bad row, skip counts)
    "eurus": (
        "eurus",
        _eurus_bad,
        "row 1: field 'reward_model.ground_truth' is empty",
        {
            "field 'reward_model.ground_truth' is empty": 1,
            "field 'ability' is 'chemistry', expected one of ['math', 'code']": 1,
            "field 'reward_model.ground_truth' is missing": 1,
            "field 'reward_model.ground_truth' is not valid JSON for a code row (Expecting value)": 1,
        },
    ),
    "gsm8k": (
        "gsm8k",
        lambda rows: [rows[0], {**rows[1], "answer": "no marker here"}, {**rows[2], "answer": "steps\n####  "}],
        "row 1: field 'answer' has no final answer after '####'",
        {"field 'answer' has no final answer after '####'": 1, "field 'answer' is empty after '####'": 1},
    ),
    "math": (
        "math",
        lambda rows: [{**rows[0], "solution": "no box"}, rows[1], {**rows[2], "problem": ""}],
        "row 0: field 'solution' has no \\boxed{} answer",
        {"field 'solution' has no \\boxed{} answer": 1, "field 'problem' is empty": 1},
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_rows_error_names_row_and_field(case, tmp_path):
    schema, mutate, message, _ = BAD_CASES[case]
    path = write_jsonl(tmp_path / f"{case}.jsonl", mutate(read_jsonl(SHIPPED[schema])))
    with pytest.raises(BadRowError) as info:
        load_prime_dataset(path)
    assert str(info.value) == message


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_rows_skipped_and_counted(case, tmp_path, caplog):
    schema, mutate, _, counts = BAD_CASES[case]
    rows = mutate(read_jsonl(SHIPPED[schema]))
    path = write_jsonl(tmp_path / f"{case}.jsonl", rows)
    ds, report = load_prime_dataset(path, on_bad_row="skip", return_report=True)
    assert report.skipped == counts
    assert report.num_rows == len(rows)
    assert report.num_skipped == sum(counts.values())
    assert len(ds) == report.num_kept == len(rows) - report.num_skipped
    assert f"skipped {report.num_skipped} of {len(rows)} rows" in caplog.text


def test_every_eurus_row_bad_in_one_field_each_kind(tmp_path):
    """Each single-field fault on an otherwise good row errors with that row and field."""
    faults = {
        "missing ground truth": (lambda r: r["reward_model"].pop("ground_truth"), "reward_model.ground_truth"),
        "empty ground truth": (lambda r: r["reward_model"].update(ground_truth=""), "reward_model.ground_truth"),
        "unknown ability": (lambda r: r.update(ability="poetry"), "ability"),
        "empty prompt": (lambda r: r.update(prompt=[]), "prompt"),
    }
    for name, (fault, field_name) in faults.items():
        rows = read_jsonl(SHIPPED["eurus"])
        fault(rows[2])
        path = write_jsonl(tmp_path / "rows.jsonl", rows)
        with pytest.raises(BadRowError, match=rf"^row 2: field '{field_name}' "):
            load_prime_dataset(path)


def test_on_bad_row_must_be_known():
    with pytest.raises(ValueError, match="on_bad_row"):
        load_prime_dataset(SHIPPED["math"], on_bad_row="ignore")


# --- max_prompt_length with the tiny tokenizer ------------------------------------------------


def test_max_prompt_length(tiny_model_dir):
    from transformers import AutoTokenizer

    from prime_trl.data import prompt_num_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = load_prime_dataset(SHIPPED["gsm8k"])
    lengths = [prompt_num_tokens(tokenizer, row["prompt"]) for row in ds]
    limit = sorted(lengths)[1]  # the shortest two fit, the longest does not
    longest = lengths.index(max(lengths))
    with pytest.raises(BadRowError, match=rf"^row {longest}: field 'prompt' is {max(lengths)} tokens, longer than"):
        load_prime_dataset(SHIPPED["gsm8k"], tokenizer=tokenizer, max_prompt_length=limit)
    kept, report = load_prime_dataset(
        SHIPPED["gsm8k"], tokenizer=tokenizer, max_prompt_length=limit, on_bad_row="skip", return_report=True
    )
    assert len(kept) == sum(n <= limit for n in lengths) and report.num_skipped == 1
    assert len(load_prime_dataset(SHIPPED["gsm8k"], tokenizer=tokenizer, max_prompt_length=max(lengths))) == 3


def test_max_prompt_length_needs_tokenizer():
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_prime_dataset(SHIPPED["gsm8k"], max_prompt_length=10)


# --- files and directories ------------------------------------------------------------------


def test_parquet_round_trip(tmp_path):
    from datasets import Dataset

    rows = read_jsonl(SHIPPED["eurus"])
    path = str(tmp_path / "eurus.parquet")
    Dataset.from_list(rows).to_parquet(path)
    assert load_prime_dataset(path).to_list() == load_prime_dataset(SHIPPED["eurus"]).to_list()
    # The normalised rows survive a parquet round trip too.
    out = str(tmp_path / "prime.parquet")
    load_prime_dataset(path).to_parquet(out)
    assert Dataset.from_parquet(out).to_list() == load_prime_dataset(SHIPPED["eurus"]).to_list()


def test_directory_with_splits(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", read_jsonl(SHIPPED["math"]))
    write_jsonl(tmp_path / "test.jsonl", read_jsonl(SHIPPED["math"])[:1])
    assert len(load_prime_dataset(str(tmp_path), split="train")) == 3
    assert len(load_prime_dataset(str(tmp_path), split="test")) == 1


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_prime_dataset(str(path))
