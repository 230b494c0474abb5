"""Learning algorithms (no ROS, MuJoCo or vendor SDK here).

Every learner follows one contract (``robot_rl.algos.base``): a config dataclass whose
docstring holds the loss and the paper, networks built once, ``update(batch) ->
metrics``, ``policy()``, ``state_dict()``. Critic ensembles run in one batched pass.

    from robot_rl.algos import OfflineData, LearnerSpec, make_learner
"""

from robot_rl.algos import bc, cql, diffusion, edp, ensemble_sac, iql, saq, td3bc  # noqa: F401  (registers the learners)
from robot_rl.algos.base import Learner, LearnerConfig, available_learners, learner_class, make_config, make_learner
from robot_rl.algos.data import REWARD_SCHEMES, LearnerSpec, OfflineData
from robot_rl.algos.normalize import Normalizer

__all__ = [
    "REWARD_SCHEMES",
    "Learner",
    "LearnerConfig",
    "LearnerSpec",
    "Normalizer",
    "OfflineData",
    "available_learners",
    "learner_class",
    "make_config",
    "make_learner",
]
