"""``robot-rl calibrate board|intrinsics|handeye|joints``: print a board, calibrate a
camera, a hand-eye transform or joint offsets; results are saved as versioned YAML under
``$ROBOT_RL_CALIBRATION_DIR`` (default ``~/.robot_rl/calibration``), see docs/calibration.md."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robot_rl.cli._args import arg


@dataclass
class BoardConfig:
    """Render a calibration board as an image to print (check the square size with a ruler).

    Example: robot-rl calibrate board checkerboard:9x6:0.025 --out board.png
    Example: robot-rl calibrate board charuco:7x5:0.04:0.03:DICT_5X5_100 --out charuco.png --px-per-m 11811
    """

    spec: str = arg(
        help="board: checkerboard:COLSxROWS:SQUARE_M (inner corners) or charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT",
        positional=True,
    )
    out: Path = arg(Path("board.png"), help="image file to write (.png)")
    px_per_m: float = arg(11811.0, help="resolution in pixels per metre (11811 = 300 dpi)")


def board_cmd(cfg: BoardConfig) -> int:
    import cv2

    from robot_rl.calibration.boards import parse_board, render_board

    board = parse_board(cfg.spec)
    image, _ = render_board(board, cfg.px_per_m)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(cfg.out), image):
        raise ValueError(f"{cfg.out}: cannot write the image (unknown extension or unwritable folder)")
    dpi = cfg.px_per_m * 0.0254
    square_mm = round(board.square * cfg.px_per_m) / cfg.px_per_m * 1000  # squares are whole pixels
    print(
        f"wrote {cfg.out}: {board.spec}, {image.shape[1]}x{image.shape[0]} px; print at {dpi:.0f} dpi (100% scale, "
        f"no fit-to-page): squares {square_mm:.2f} mm, pattern {board.squares[0]}x{board.squares[1]} squares"
    )
    return 0


@dataclass
class IntrinsicsConfig:
    """Calibrate a camera's intrinsics from images of a board; saves intrinsics/<camera-id>/v<N>.yaml.

    The file is a ROS camera_info YAML: the camera node loads it with -p calibration_id:=<camera-id>.
    Example: robot-rl calibrate intrinsics --images captures/wrist --board checkerboard:9x6:0.025 --camera-id wrist
    """

    images: Path = arg(help="folder of board images (png/jpg), 15-30 views at varied angles, distances and image regions")
    board: str = arg(help="board spec, e.g. checkerboard:9x6:0.025 or charuco:7x5:0.04:0.03:DICT_5X5_100")
    camera_id: str = arg(help="calibration id of this camera (e.g. the camera node's name: wrist)")
    camera_name: str = arg("", help="camera_name written into the file (default: the camera id)")
    min_views: int = arg(8, help="fewer usable views is an error")
    fix_k3: bool = arg(True, help="keep k3 = 0 (ROS camera_calibration's default)")
    fix_aspect: bool = arg(False, help="force fx = fy")
    calibration_dir: str = arg("", help="registry root (default: $ROBOT_RL_CALIBRATION_DIR or ~/.robot_rl/calibration)")


def intrinsics_cmd(cfg: IntrinsicsConfig) -> int:
    from robot_rl.calibration.boards import parse_board
    from robot_rl.calibration.camera_info import camera_info_dict
    from robot_rl.calibration.intrinsics import calibrate_intrinsics, load_images
    from robot_rl.calibration.registry import save_calibration

    board = parse_board(cfg.board)
    images = load_images(cfg.images)
    name = cfg.camera_name or cfg.camera_id
    result = calibrate_intrinsics(images, board, name, cfg.min_views, fix_k3=cfg.fix_k3, fix_aspect=cfg.fix_aspect)
    data = camera_info_dict(result.intrinsics)
    data.update(
        board=board.spec,
        reprojection_rms_px=result.rms,
        per_view_rms_px={k: round(v, 4) for k, v in result.per_view_rms.items()},
        rejected=dict(result.rejected),
        images=str(cfg.images),
    )
    path = save_calibration("intrinsics", cfg.camera_id, data, cfg.calibration_dir or None)
    print(result.summary())
    print(f"saved {path}")
    return 0


@dataclass
class HandEyeConfig:
    """Hand-eye calibration from board images and the robot's end-effector pose at each; saves handeye/<id>/v<N>.yaml.

    eye_in_hand (camera on the gripper) gives T_gripper_camera; eye_to_hand (fixed camera,
    board on the gripper) gives T_base_camera. Poses file: see robot_rl.calibration.handeye.
    Example: robot-rl calibrate handeye --images captures/he --poses captures/he/poses.yaml \\
                 --board charuco:7x5:0.04:0.03:DICT_5X5_100 --intrinsics wrist --id wrist
    """

    images: Path = arg(help="folder of board images, one per robot pose")
    poses: Path = arg(help="YAML/JSON file of T_base_gripper per image (position m + quaternion xyzw, or a 4x4 matrix)")
    board: str = arg(help="board spec; ChArUco, or a checkerboard with cols + rows odd (e.g. 9x6)")
    intrinsics: str = arg(
        help="the camera's intrinsics: an id (latest version), intrinsics/<id>/vN, or a camera_info YAML path"
    )
    id: str = arg(help="calibration id for the result (e.g. the camera's id)")
    mode: str = arg("eye_in_hand", help="where the camera is", choices=("eye_in_hand", "eye_to_hand"))
    method: str = arg("park", help="cv2.calibrateHandEye method", choices=("tsai", "park", "horaud", "andreff", "daniilidis"))
    min_views: int = arg(8, help="fewer usable views is an error")
    calibration_dir: str = arg("", help="registry root (default: $ROBOT_RL_CALIBRATION_DIR or ~/.robot_rl/calibration)")


def handeye_cmd(cfg: HandEyeConfig) -> int:
    from robot_rl.calibration.boards import parse_board
    from robot_rl.calibration.handeye import calibrate_handeye, load_robot_poses
    from robot_rl.calibration.intrinsics import load_images
    from robot_rl.calibration.registry import load_intrinsics, save_calibration

    board = parse_board(cfg.board)
    intr = load_intrinsics(cfg.intrinsics, root=cfg.calibration_dir or None)
    images, poses = load_images(cfg.images), load_robot_poses(cfg.poses)
    result = calibrate_handeye(images, poses, intr, board, cfg.mode, cfg.method, cfg.min_views)
    data = result.to_dict()
    data.update(board=board.spec, intrinsics=cfg.intrinsics, images=str(cfg.images), poses=str(cfg.poses))
    path = save_calibration("handeye", cfg.id, data, cfg.calibration_dir or None)
    print(result.summary())
    print(f"saved {path}")
    return 0


@dataclass
class JointsConfig:
    """Joint-offset (zero) calibration: read the arm at a known reference pose; saves joints/<id>/v<N>.yaml.

    Example: robot-rl calibrate joints --robot mock_arm --id my_arm
    Example: robot-rl calibrate joints --readings zero_pose.yaml --id koch --signs 1 -1 1 1 1 1
    """

    id: str = arg(help="calibration id (e.g. the robot's name or serial)")
    robot: str = arg("", help="registered robot to connect to and read joint_pos from")
    robot_config: str = arg("{}", help="JSON object of robot config overrides (ports, ids...)")
    readings: str = arg("", help="instead of a robot: YAML/JSON file {names: [...], readings: [[...], ...]}")
    reference: list[float] = arg([], help="the reference pose, one value per joint (rad); default all zeros")
    signs: list[int] = arg([], help="+1/-1 per joint; default all +1")
    samples: int = arg(10, help="readings averaged from the robot")
    max_spread: float = arg(0.02, help="largest standard deviation of a joint's readings before they are refused")
    calibration_dir: str = arg("", help="registry root (default: $ROBOT_RL_CALIBRATION_DIR or ~/.robot_rl/calibration)")


def joints_cmd(cfg: JointsConfig) -> int:
    from robot_rl.calibration.joints import calibrate_joint_offsets, load_readings, read_joint_positions
    from robot_rl.calibration.registry import save_calibration

    if bool(cfg.robot) == bool(cfg.readings):
        raise ValueError("give exactly one of --robot NAME (read a connected robot) or --readings FILE")
    if cfg.robot:
        from robot_rl.robots import make_robot

        try:
            overrides = json.loads(cfg.robot_config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--robot-config is not valid JSON: {exc}") from None
        if not isinstance(overrides, dict):
            raise ValueError("--robot-config must be a JSON object")
        with make_robot(cfg.robot, **overrides) as robot:
            readings, names = read_joint_positions(robot, cfg.samples)
        source = f"robot {cfg.robot}"
    else:
        readings, names = load_readings(cfg.readings)
        source = cfg.readings
    cal = calibrate_joint_offsets(readings, cfg.reference or None, cfg.signs or None, names, cfg.max_spread)
    data = cal.to_dict()
    data.update(source=source, samples=int(readings.shape[0]))
    path = save_calibration("joints", cfg.id, data, cfg.calibration_dir or None)
    width = max(len(n) for n in cal.names)
    print(f"{'joint'.ljust(width)}  offset      sign  spread")
    for n, o, s, sp in zip(cal.names, cal.offsets, cal.signs, cal.spread):
        print(f"{n.ljust(width)}  {o:+.5f}  {s:+d}    {sp:.5f}")
    print(f"saved {path}")
    return 0
