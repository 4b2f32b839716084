"""Property tests of the bit allocation over random budgets and random small graphs
(LayerGraph/Layer objects built directly, chains and residual blocks)."""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tvm_mpq.errors import BudgetError
from tvm_mpq.frontend.graph import Layer, LayerGraph
from tvm_mpq.memory.allocation import allocate, footprint_8bit
from tvm_mpq.memory.liveness import (
    peak_activation_bytes,
    scratch_bytes,
    tensor_bits,
    tensor_sources,
)
from tvm_mpq.memory.plan import packed_bytes, param_bytes, plan_from_json

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw, residual=True):
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(2, 24))
    w = draw(st.integers(2, 24))
    layers: list[Layer] = []
    cur, shape = "x", (1, c, h, w)
    n_blocks = draw(st.integers(0, 6))

    def add_layer(kind, cout=None, k=1, stride=1, inputs=None):
        nonlocal cur, shape
        i = len(layers)
        cin = shape[1]
        if kind == "depthwise":
            cout, n_w = cin, cin * k * k
        elif kind == "add":
            cout, n_w = cin, 0
        else:
            n_w = cout * cin * k * k
        oh, ow = -(-shape[2] // stride), -(-shape[3] // stride)
        out_shape = (1, cout, oh, ow)
        layers.append(Layer(name=f"n{i}", kind=kind, inputs=inputs or [cur], output=f"t{i}",
                            in_shape=shape, out_shape=out_shape,
                            weight_shape=(cout, 1 if kind == "depthwise" else cin, k, k)
                            if n_w else (),
                            n_weights=n_w, n_bias=0, kernel=k, stride=stride,
                            pad=k // 2, nodes=[f"n{i}"]))
        cur, shape = f"t{i}", out_shape

    add_layer("conv", draw(st.integers(1, 48)), k=3, stride=draw(st.sampled_from([1, 2])))
    for _ in range(n_blocks):
        if residual and draw(st.booleans()):
            skip = cur
            add_layer("pointwise", shape[1])
            add_layer("depthwise", k=3)
            add_layer("add", inputs=[skip, cur])
        else:
            kind = draw(st.sampled_from(["conv", "depthwise", "pointwise"]))
            add_layer(kind, draw(st.integers(1, 64)), k=1 if kind == "pointwise" else 3,
                      stride=draw(st.sampled_from([1, 1, 2])))
    if draw(st.booleans()):
        i = len(layers)
        layers.append(Layer(name=f"n{i}", kind="pool", inputs=[cur], output=f"t{i}",
                            in_shape=shape, out_shape=(1, shape[1], 1, 1), kernel=shape[2],
                            nodes=[f"n{i}"]))
        classes = draw(st.integers(1, 20))
        i += 1
        layers.append(Layer(name=f"n{i}", kind="linear", inputs=[f"t{i - 1}"],
                            output=f"t{i}", in_shape=(1, shape[1]), out_shape=(1, classes),
                            weight_shape=(classes, shape[1]), n_weights=classes * shape[1],
                            n_bias=classes, nodes=[f"n{i}"]))
    return LayerGraph("rand", "x", (1, c, h, w), layers[-1].output, layers)


def _minimum(g, scheme, ram_model):
    """(RAM, FLASH) footprints with every cuttable tensor/weight at 2 bits, computed
    independently of the allocator's search."""
    wl = g.weight_layers
    src = tensor_sources(g)
    last = len(wl) - 1
    low = {t: 8 if k is None or k == last else 2 for t, k in src.items()}
    if ram_model == "chain":
        ram = max(packed_bytes(layer.n_in, low[layer.inputs[0]])
                  + packed_bytes(layer.n_out, low[layer.output]) for layer in wl)
    else:
        ram = peak_activation_bytes(g, low, scratch=True)
    flash = sum(packed_bytes(layer.n_weights, 2) + param_bytes(scheme, layer.out_channels, 2, 2)
                for layer in wl)
    return ram, flash


def _check_plan(g, plan, flash, ram, scheme, ram_model):
    wl = g.weight_layers
    assert [lp.name for lp in plan.layers] == [layer.name for layer in wl]
    for lp in plan.layers:
        assert {lp.in_bits, lp.out_bits, lp.w_bits} <= {8, 4, 2}
    assert plan.layers[0].in_bits == 8
    assert plan.layers[-1].out_bits == 8
    bits = tensor_bits(g, plan)
    assert bits[g.input_name] == 8 and bits[g.output_name] == 8
    for lp, layer in zip(plan.layers, wl):
        assert lp.in_bits == bits[layer.inputs[0]] and lp.out_bits == bits[layer.output]
        assert lp.icn == (scheme == "mixpc" or lp.w_bits < 8 or lp.out_bits < 8)
    ro = sum(packed_bytes(layer.n_weights, lp.w_bits)
             + param_bytes(scheme, layer.out_channels, lp.w_bits, lp.out_bits)
             for lp, layer in zip(plan.layers, wl))
    if ram_model == "chain":
        rw = max(packed_bytes(layer.n_in, lp.in_bits) + packed_bytes(layer.n_out, lp.out_bits)
                 for lp, layer in zip(plan.layers, wl))
    else:
        rw = peak_activation_bytes(g, bits, scratch=True)
    assert (plan.ro_bytes, plan.rw_bytes) == (ro, rw)
    assert ro <= flash and rw <= ram
    # cuts only when needed
    ro8, rw8 = footprint_8bit(g, scheme, ram_model)
    if rw8 <= ram:
        assert all(lp.out_bits == 8 for lp in plan.layers)
    if rw8 <= ram and ro8 <= flash:
        assert plan.all_8bit
    # the JSON contract round-trips and validates against the graph
    assert plan_from_json(json.loads(json.dumps(plan.to_json())), g).to_json() == plan.to_json()


def _run(g, flash, ram, scheme, ram_model):
    ram_min, flash_min = _minimum(g, scheme, ram_model)
    try:
        plan = allocate(g, flash, ram, scheme=scheme, ram_model=ram_model)
    except BudgetError as e:
        msg = e.one_line()
        assert "\n" not in msg
        if ram_min > ram:
            assert msg.startswith("RAM budget")
        else:
            assert msg.startswith("FLASH budget") and flash_min > flash
        return None
    assert ram_min <= ram
    if scheme == "mixpc":          # all weights at 2 bits is the smallest MixPC footprint
        assert flash_min <= flash
    _check_plan(g, plan, flash, ram, scheme, ram_model)
    again = allocate(g, flash, ram, scheme=scheme, ram_model=ram_model)
    assert again.to_json() == plan.to_json()
    return plan


# A budget between the all-2-bit minimum (0) and the all-8-bit footprint (1), with a
# margin on both sides so that infeasible and untouched cases are drawn too.
budget_fraction = st.floats(-0.15, 1.15)


def _budgets(g, scheme, ram_model, fr, ff):
    ro8, rw8 = footprint_8bit(g, scheme, ram_model)
    ram_min, flash_min = _minimum(g, scheme, ram_model)
    return (max(1, int(flash_min + ff * (ro8 - flash_min))),
            max(1, int(ram_min + fr * (rw8 - ram_min))))


@SETTINGS
@given(g=graphs(residual=False), fr=budget_fraction, ff=budget_fraction,
       scheme=st.sampled_from(["mixpc", "mixpl"]))
def test_random_chains_chain_model(g, fr, ff, scheme):
    flash, ram = _budgets(g, scheme, "chain", fr, ff)
    _run(g, flash, ram, scheme, "chain")


@SETTINGS
@given(g=graphs(residual=True), fr=budget_fraction, ff=budget_fraction,
       scheme=st.sampled_from(["mixpc", "mixpl"]),
       ram_model=st.sampled_from(["chain", "liveness"]))
def test_random_graphs_both_models(g, fr, ff, scheme, ram_model):
    flash, ram = _budgets(g, scheme, ram_model, fr, ff)
    _run(g, flash, ram, scheme, ram_model)


@SETTINGS
@given(g=graphs(residual=True), fr=st.floats(0.05, 1.2))
def test_liveness_peak_at_least_chain(g, fr):
    """For any bit assignment (here: the chain plan's), the liveness peak is at least the
    chain model's largest per-layer footprint."""
    ro8, rw8 = footprint_8bit(g, "mixpc", "chain")
    try:
        plan = allocate(g, 10 * ro8, max(1, int(rw8 * fr)), ram_model="chain")
    except BudgetError:
        assume(False)
    bits = tensor_bits(g, plan)
    assert peak_activation_bytes(g, bits) >= plan.rw_bytes
    assert peak_activation_bytes(g, bits, scratch=True) >= peak_activation_bytes(g, bits)
    assert all(scratch_bytes(layer) >= 0 for layer in g.layers)


@SETTINGS
@given(g=graphs(residual=True), ram=st.integers(1, 40_000), flash=st.integers(1, 200_000),
       scheme=st.sampled_from(["mixpc", "mixpl"]),
       ram_model=st.sampled_from(["chain", "liveness"]))
def test_random_absolute_budgets(g, ram, flash, scheme, ram_model):
    _run(g, flash, ram, scheme, ram_model)
