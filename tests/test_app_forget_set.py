"""Forget set page (AppTest): built-in choice, own prompts, uploads (good and bad), retain set, probe."""

from __future__ import annotations

import json


def open_forget_page(new_app, with_model=False):
    at = new_app(with_model=with_model)
    return at.switch_page("pages/forget_set.py").run()


def questions(rows):
    return [row["question"] for row in rows]


def test_first_three_built_in_prompts_are_preselected(app_env, new_app):
    at = open_forget_page(new_app)
    assert not at.exception, at.exception
    assert at.multiselect(key="keep.forget_builtin").value == questions(app_env.forget[:3])
    assert questions(at.session_state["forget_items"]) == questions(app_env.forget[:3])
    assert at.session_state["retain_items"] == app_env.retain
    assert len(at.data_editor) == 2  # own forget prompts, retain pairs


def test_typed_prompts_join_the_forget_set_and_survive_a_page_switch(app_env, new_app):
    at = open_forget_page(new_app)
    at.session_state["forget_custom_editor_0"] = {
        "edited_rows": {}, "added_rows": [{"question": "What is my PIN?", "answer": "1234"}, {}], "deleted_rows": []}
    at.run()
    assert not at.exception, at.exception
    assert questions(at.session_state["forget_items"])[-1] == "What is my PIN?"  # the empty row is ignored
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/forget_set.py").run()
    assert questions(at.session_state["forget_items"]) == questions(app_env.forget[:3]) + ["What is my PIN?"]


def test_uploads_replace_own_prompts_and_a_bad_one_changes_nothing(app_env, new_app):
    at = open_forget_page(new_app)
    good = "".join(json.dumps({"question": f"Secret {i}?", "answer": str(i)}) + "\n" for i in range(2))
    at.file_uploader(key="forget_custom_upload").set_value(("mine.jsonl", good.encode(), "application/jsonl"))
    at.run()
    assert not at.exception and not at.error, at.error
    assert questions(at.session_state["forget_custom_rows"]) == ["Secret 0?", "Secret 1?"]

    bad = good + '{"answer": "no question"}\n'
    at.file_uploader(key="forget_custom_upload").set_value(("bad.jsonl", bad.encode(), "application/jsonl"))
    at.run()
    assert not at.exception, at.exception
    assert "bad.jsonl, line 3, field 'question'" in at.error[0].value
    assert questions(at.session_state["forget_custom_rows"]) == ["Secret 0?", "Secret 1?"]

    at.file_uploader(key="retain_table_upload").set_value(("r.csv", b"question,answer\nQ?,\n", "text/csv"))
    at.run()
    assert "1 retain pairs have no answer" in at.error[-1].value


def test_probe_shows_answers_likelihood_and_knowledge(app_env, new_app):
    at = open_forget_page(new_app, with_model=True)
    at.checkbox(key="keep.probe_retain").check()
    at.button(key="btn_probe").click().run()
    assert not at.exception, at.exception
    result = at.session_state["probe"]
    assert questions(result["forget"]) == questions(app_env.forget[:3])
    assert len(result["retain"]) == len(app_env.retain)
    assert {"greedy_answer", "answer_nll", "answer_prob", "knows"} <= set(result["forget"][0])
    assert any("the model knows" in markdown.value for markdown in at.markdown)
    probe_tables = [table.value for table in at.dataframe if "greedy_answer" in table.value.columns]
    assert [len(table) for table in probe_tables] == [3, len(app_env.retain)]


def test_probe_needs_a_model(app_env, new_app):
    at = open_forget_page(new_app)
    assert at.button(key="btn_probe").disabled
    assert "Load a model to probe it." in [info.value for info in at.info]
