// The swin_kernels operator library: schemas of every op (implementations live in cpu/ and cuda/).
//
// Built as the Python extension module swin_kernels._C. Importing it registers the ops with the dispatcher;
// the module itself exports nothing. Python-side fake (meta) implementations and autograd formulas are in
// swin_kernels/ops/_ext.py.
#include <Python.h>
#include <torch/library.h>

#include "cuda/limits_op.h"  // the op cuda_limits(): registered here, once, in every build

extern "C" {
// Entry point of `import swin_kernels._C`: an empty module, the ops are registered by static initialisers.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "swin_kernels operator library", -1, nullptr};
  return PyModule_Create(&module);
}
}

TORCH_LIBRARY(swin_kernels, m) {
  m.set_python_module("swin_kernels.ops._ext");
  // Shifted window attention on the unpartitioned (B, H, W, 3C) qkv map or (B, D, H, W, 3C) volume: returns out
  // (B, [D,] H, W, C) and the row log-sum-exp of the scores (B*nW, heads, N) that the backward recomputes the
  // probabilities from. window and shift are (rows, columns) for a map, (depth, rows, columns) for a volume;
  // roll_before_pad selects timm's order (see csrc/index_maps.h).
  m.def(
      "window_attention_fwd(Tensor qkv, Tensor? pad_qkv, Tensor? bias, int num_heads, int[] window, int[] shift, "
      "bool roll_before_pad, float scale) -> (Tensor, Tensor)");
  // Gradients of qkv (B, [D,] H, W, 3C), pad_qkv (3C,) and bias (heads, N, N), each always returned. Recomputes the
  // probabilities from qkv and lse; D_i = dO_i . O_i comes from them too, so the output is not needed.
  m.def(
      "window_attention_bwd(Tensor grad_out, Tensor qkv, Tensor? pad_qkv, Tensor? bias, Tensor lse, "
      "int num_heads, int[] window, int[] shift, bool roll_before_pad, float scale) -> (Tensor, Tensor, Tensor)");
  // pad and roll(-shift) (in either order) -> partition: (B, [D,] H, W, C) -> (B*nW, N, C).
  m.def("window_partition(Tensor x, int[] window, int[] shift, bool roll_before_pad) -> Tensor");
  // reverse -> roll(+shift) and crop: (B*nW, N, C) -> (B, [D,] H, W, C); sizes = ([D,] H, W).
  m.def("window_reverse(Tensor windows, int[] window, int[] sizes, int[] shift, bool roll_before_pad) -> Tensor");
}
