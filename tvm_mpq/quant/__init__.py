"""tvm_mpq.quant: quantization-aware training and QDQ export (docs/quantization.md).

Modules, in pipeline order:
  torch_model  float ONNX model <-> PyTorch twin, a DAG over the LayerGraph
               (`from_onnx`, `to_float_onnx`)
  faces/       one file per operator family: its module, build, quantizers,
               calibration, LayerQParams and QDQ export (interface: faces/__init__.py)
  qplan        plan dict -> per-layer configs (`read_plan`, `layer_configs`, `make_plan`)
  fake_quant   PACT / weight / input / logit quantizers, `configure(net, plan)`
  calibrate    post-training calibration (`calibrate`, `synthetic_inputs`)
  train        float training + QAT with checkpoints (`run_training`)
  export_qdq   QDQ ONNX export (`export_qdq`)
  qparams      integer parameters for the converter (`read_qdq_params`, `layer_qparams`)
  workflow     the steps the `train` / `quantize` verbs share

Nothing is imported here: torch is an optional dependency, and `qparams.read_qdq_params`
works without it.
"""
