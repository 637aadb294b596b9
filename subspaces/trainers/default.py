"""Standard training of one network (the baseline every subspace is compared against)."""
from __future__ import annotations

from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import classification_metrics

from .base import TRAINERS, RunContext, TestResult, Trainer


def test_metrics(s, ctx: RunContext, model, *, prefix: str = "test") -> tuple:
    """Accuracy and the calibration metrics of ``model`` on the test set (settings ``s``: --amp,
    --channels-last), logged to TensorBoard at the run's global step."""
    preds = predict(model, ctx.data.val_loader, ctx.device, amp=s.amp, channels_last=s.channels_last)
    m = classification_metrics(preds.logits, preds.targets)
    acc = m.pop("acc")
    m["test_loss"] = m["nll"]
    ctx.log_scalar(f"{prefix}/acc", acc)
    ctx.log_scalar(f"{prefix}/loss", m["test_loss"])
    ctx.log_scalar(f"{prefix}/ece", m["ece"])
    return acc, m


@TRAINERS.register
class DefaultTrainer(Trainer):
    """``--trainer default``: plain SGD on one standard network."""

    name = "default"
    kinds = ("standard",)

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        return False  # tests the network with its own statistics

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        acc, metrics = test_metrics(self.settings, ctx, ctx.models[0])
        return TestResult(acc, metrics)
