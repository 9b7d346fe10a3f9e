"""Chinese text the incident API answers with (the pages' labels live in maps/labels.py)."""

# Told to the reporter on intake: where the incident was routed.
ROUTED_OWN_GRID = "已登记，转至{place}办理"
ROUTED_ELSEWHERE = (
    "该位置不在您负责的网格内：事项已登记并转至{place}办理，您可在事项列表中查看自己上报的事项"
)
