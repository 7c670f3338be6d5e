"""The peer's side of the comparison: baton's reference shape on Dagster.

Five external daily-partitioned upstream assets (reported, never computed by Dagster, as
baton's Phase 3 processors report completions) and one eagerly automated downstream asset
that depends on all five (baton's Phase 4 behind its gate), evaluated by one automation
condition sensor run by the daemon. The sensor's minimum interval comes from
PEER_SENSOR_INTERVAL (seconds); unset, it is Dagster's default.
"""

import os

import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2020-01-01")

UPSTREAM = [
    dg.AssetSpec(f"up_{i}", partitions_def=DAILY, description="external: reported, not run")
    for i in range(5)
]


@dg.asset(
    deps=UPSTREAM,
    partitions_def=DAILY,
    automation_condition=dg.AutomationCondition.eager(),
)
def downstream(context: dg.AssetExecutionContext) -> None:
    """Does nothing: the comparison is about when it starts, not what it computes."""
    context.log.info(f"downstream {context.partition_key}")


_interval = os.environ.get("PEER_SENSOR_INTERVAL")
_sensor_args = {"minimum_interval_seconds": int(_interval)} if _interval else {}

SENSOR = dg.AutomationConditionSensorDefinition(
    "peer_automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    **_sensor_args,
)

defs = dg.Definitions(assets=[*UPSTREAM, downstream], sensors=[SENSOR])
