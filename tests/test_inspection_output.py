"""inspect's readable report shows the data as it is: rich must not read regex classes as markup."""

from llm_jepa.inspection import print_report


def test_the_readable_report_keeps_bracketed_text(capsys):
    # red team: '&([a-z])' printed as '&()': rich took [a-z] and [0-9] for style tags
    seg = {"text": "find &([a-z])[0-9]{3}", "labelled_text": "[a-z]+", "stp_content": ["[A-Z]x"],
           "anchor_index": 3, "anchor_token": "[b]"}
    report = {"examples": [{"source": "data.jsonl:1", "conversation": [seg],
                            "pairs": [{"source": seg, "target": seg}], "stp_spans": []}],
              "lm_loss": 1.0, "jepa_loss": None, "total": 1.0, "terms": {}, "batch": {}, "settings": {}}
    print_report(report)
    out = capsys.readouterr().out
    assert "&([a-z])[0-9]{3}" in out and "'[a-z]+'" in out and "'[A-Z]x'" in out and "'[b]'" in out
