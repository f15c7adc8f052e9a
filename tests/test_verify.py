import numpy as np

from pokedex_host.compile.verify import compare


def test_verification_figures_are_judged():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 5))
    labels = list(np.argmax(a, 1) + 1)  # float model is right on every image
    b = a.copy()
    b[:3] = -b[:3]  # the "kmodel" gets 3 of 10 wrong
    v = compare(a, b, labels, [1, 2, 3, 4, 5], 2.0)
    assert v.float_top1 == 100.0 and v.kmodel_top1 == 70.0 and v.loss_pp == 30.0 and v.flagged
    assert compare(a, a, labels, [1, 2, 3, 4, 5], 2.0).flagged is False
    v = compare(a, b, [None] * 10, [1, 2, 3, 4, 5], 2.0)
    assert v.loss_pp is None and v.agreement_top1 == 70.0 and v.flagged
    assert compare(a, b, [None] * 10, [1, 2, 3, 4, 5], 2.0, judge_agreement=False).flagged is False
