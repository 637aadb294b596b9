"""Mode connectivity (Garipov et al. 2018): a quadratic Bezier curve (CurvesConv/CurvesBN) between
the first two ensemble members, their weights loaded as its fixed ends (--init-endpoints,
--fix-endpoints), its bend starting at their midpoint and trained by Algorithm 1 (alpha ~ U(0, 1)).
Needs ``ensembles/train_ensemble_members.py`` first.

    python experiment_configs/digits/mode_connectivity/connect_members.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from experiment_configs.digits.ensembles import train_ensemble_members as members  # noqa: E402
from subspaces.sweep import CONNECT, Run, run_cli, script  # noqa: E402


def pair(cfg) -> tuple:
    """The two members a curve connects: the first two seeds."""
    if len(cfg.seeds) < 2:
        from subspaces.utils.errors import UserError

        raise UserError(f"connecting members needs two seeds; pass --seeds with at least two (got {','.join(map(str, cfg.seeds))})")
    return cfg.seeds[0], cfg.seeds[1]


def train_settings(cfg, label_noise):
    """The curve between members a and b: ``id=connect-curves+ln=0.0+members=0-1+seed=0``."""
    a, b = pair(cfg)
    s = cfg.train(CONNECT, seed=a, label_noise=label_noise, conv_type="CurvesConv", bn_type="CurvesBN",
                  trainer="train_one_dim_subspaces", fix_endpoints=True, train_update_bn=True, update_bn=True)
    return replace(s, name=f"id=connect-curves+ln={label_noise}+members={a}-{b}+seed={a}")


def ends(cfg, label_noise) -> tuple:
    """The training runs of the two members."""
    return tuple(members.train_settings(cfg, seed, label_noise) for seed in pair(cfg))


def runs(cfg):
    for label_noise in cfg.label_noise:
        yield Run(train_settings(cfg, label_noise), needs=ends(cfg, label_noise), trained_by=script(members.__file__),
                  needs_as="init_endpoints")


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
