"""``robot-rl <verb>``: the one command-line entry point.

Each verb is one config dataclass + one function (its docstring is the verb's help and
carries a command to paste). Later issues add record, train, eval, deploy, finetune,
launch, calibrate and sim to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from robot_rl import __version__
from robot_rl.cli._args import add_dataclass_arguments, dataclass_from_namespace
from robot_rl.cli.calibrate import BoardConfig, HandEyeConfig, IntrinsicsConfig, JointsConfig, board_cmd, handeye_cmd, intrinsics_cmd, joints_cmd
from robot_rl.cli.data import InfoConfig, RecoverConfig, RelabelConfig, VerifyConfig, info, recover_cmd, relabel_cmd, verify_cmd
from robot_rl.cli.data_report import DataReportConfig, DataViewConfig, report_cmd, view_cmd
from robot_rl.cli.data_interop import ExportConfig, ImportConfig, export_cmd, import_cmd
from robot_rl.cli.demo import DemoConfig, demo
from robot_rl.cli.deploy import DeployConfig, deploy
from robot_rl.cli.finetune import FinetuneCLIConfig, finetune
from robot_rl.cli.launch import LaunchConfig, launch
from robot_rl.cli.record import RecordConfig, record
from robot_rl.cli.sim import CollectConfig, EvalConfig, collect, evaluate_cmd
from robot_rl.cli.train import CheckpointEvalConfig, TrainConfig, evaluate_checkpoint, train
from robot_rl.data.errors import StoreError

Command = tuple[type, Callable[[Any], int]]

COMMANDS: dict[str, Command] = {
    "demo": (DemoConfig, demo),
    "data info": (InfoConfig, info),
    "data verify": (VerifyConfig, verify_cmd),
    "data recover": (RecoverConfig, recover_cmd),
    "data relabel": (RelabelConfig, relabel_cmd),
    "data report": (DataReportConfig, report_cmd),
    "data view": (DataViewConfig, view_cmd),
    "data export": (ExportConfig, export_cmd),
    "data import": (ImportConfig, import_cmd),
    "launch": (LaunchConfig, launch),
    "record": (RecordConfig, record),
    "sim collect": (CollectConfig, collect),
    "sim eval": (EvalConfig, evaluate_cmd),
    "train": (TrainConfig, train),
    "eval": (CheckpointEvalConfig, evaluate_checkpoint),
    "deploy": (DeployConfig, deploy),
    "finetune": (FinetuneCLIConfig, finetune),
    "calibrate board": (BoardConfig, board_cmd),
    "calibrate intrinsics": (IntrinsicsConfig, intrinsics_cmd),
    "calibrate handeye": (HandEyeConfig, handeye_cmd),
    "calibrate joints": (JointsConfig, joints_cmd),
}

GROUP_HELP = {"data": "inspect, check, repair and relabel episode stores", "sim": "scripted data and evaluation on the sim twin", "calibrate": "camera intrinsics, hand-eye and joint-offset calibration; boards to print"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-rl", description="robot_rl: robot learning on real hardware and its sim twin")
    parser.add_argument("--version", action="version", version=f"robot-rl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (cfg_cls, _fn) in COMMANDS.items():
        words = name.split()
        doc = (cfg_cls.__doc__ or "").strip()
        summary = (doc.splitlines()[0] if doc else "").replace("%", "%%")  # argparse %-formats help
        if len(words) == 1:
            sub = top.add_parser(words[0], help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        else:
            group, verb = words
            if group not in groups:
                gp = top.add_parser(group, help=GROUP_HELP.get(group, ""), description=GROUP_HELP.get(group, ""))
                groups[group] = gp.add_subparsers(dest="subverb", required=True, metavar="<verb>")
            sub = groups[group].add_parser(verb, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_dataclass_arguments(sub, cfg_cls)
        sub.set_defaults(_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg_cls, fn = COMMANDS[ns._command]
    try:
        return fn(dataclass_from_namespace(cfg_cls, ns))
    except (StoreError, FileNotFoundError, KeyError, IndexError, ValueError, TypeError, FloatingPointError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"robot-rl {ns._command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
