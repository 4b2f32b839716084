"""Lower one scheduled TIR PrimFunc to a standalone C function (no TVM runtime).

`tvm.compile(mod, target="c")` wraps every function in TVM's packed calling convention,
which needs the C++ runtime. A bare-metal kernel instead wants `int32_t f(uint8_t *x, ...)`.
The recipe:

    1. BindTarget(c)
    2. TVM's default S-TIR pipeline, with MakePackedAPI, AnnotateEntryFunc and the two
       storage legalizers (which insist on running after MakePackedAPI) disabled
    3. UnpackedAPI (below): buffer parameters become typed pointer parameters bound by
       DeclBuffer; the body sits in a CPU device context and returns int32 0
    4. FP8/BF16 storage legalization, then TVM's finalize_host_passes
    5. TVM's C code generator, then `standalone_c`: the TVM includes and the library
       context global are replaced by <stdint.h>, and the definition gets the exact
       prototype the caller asks for (const-qualified inputs)

The result depends only on the PrimFunc: the same function gives the same bytes.
Kernels must not allocate 1 kB or more of scratch (TVM would call
TVMBackendAllocWorkspace); `lower_to_c` refuses any source that mentions it.
"""

from __future__ import annotations

import re

from .. import tvm_adapter as ta

_DISABLED = ["tirx.MakePackedAPI", "tirx.AnnotateEntryFunc", "tirx.FP8StorageLegalize",
             "tirx.BF16StorageLegalize"]


def _unpacked_api():
    """Buffer params -> pointer params + DeclBuffer, CPU device context, `return 0`."""
    tvm, tirx = ta.tvm(), ta.tirx()

    @tirx.transform.prim_func_pass(opt_level=0, name="mpq.UnpackedAPI")
    def unpacked_api(func, _mod, _ctx):
        params, decls = [], []
        for p in func.params:
            if ta.is_buffer_var(p):
                ptr = tirx.Var(p.name, tvm.ir.PointerType(tvm.ir.PrimType(p.dtype)))
                params.append(ptr)
                decls.append(tirx.DeclBuffer(p, data=ptr))
            else:
                params.append(p)
        body = tirx.SeqStmt(decls + [func.body])
        body = tirx.AttrStmt("default", "device_id", tirx.const(0, "int32"), body)
        body = tirx.AttrStmt("default", "device_type", tirx.const(1, "int32"), body)
        body = tirx.SeqStmt([body, tirx.Return(tirx.const(0, "int32"))])
        return tirx.PrimFunc(params, body, tvm.ir.PrimType("int32"), func.attrs)

    return unpacked_api


def lower_to_tvm_c(func, name: str, config: dict | None = None) -> str:
    """Steps 1-5 of the recipe: TVM's C source for `func` under the symbol `name`.

    config: extra PassContext options (e.g. {"s_tir.LoopPartition": {...}})."""
    tvm, tirx, s_tir = ta.tvm(), ta.tirx(), ta.s_tir()
    target = ta.c_target()
    mod = tvm.IRModule({name: func.with_attr("global_symbol", name)})
    with tvm.transform.PassContext(opt_level=3, disabled_pass=_DISABLED, config=config or {}):
        mod = tirx.transform.BindTarget(target)(mod)
        mod = s_tir.pipeline.default_s_tir_pipeline()[0](mod)
        mod = _unpacked_api()(mod)
        mod = tirx.transform.FP8StorageLegalize()(mod)
        mod = tirx.transform.BF16StorageLegalize()(mod)
        mod = s_tir.pipeline.finalize_host_passes()(mod)
        return ta.tir_codegen_build(mod, target).inspect_source()


_DROP = re.compile(r'^(// tvm target:|#define TVM_EXPORTS|#include "tvm/|#include <stdbool.h>|'
                   r'void\* __tvm_ffi__library_ctx)')


# TVM declares every T.call_extern callee; the micro-kernels are defined in the prelude
_EXTERN_DECL = re.compile(r'#ifdef __cplusplus\nextern "C"\n#endif\nTVM_DLL int32_t mpq_dsp_\w+\('
                          r'[^)]*\);\n')


def standalone_c(tvm_source: str, name: str, prototype: str, banner: str,
                 prelude: str = "") -> str:
    """TVM's C source -> a self-contained translation unit (step 5 of the recipe).

    `prototype` is `int32_t name(<params>)` without the semicolon; its parameter types must
    equal TVM's up to `const` (checked), so the ABI cannot silently drift from the TIR.
    """
    sig = re.compile(r"TVM_DLL int32_t " + re.escape(name) + r"\(([^)]*)\)")
    found = sig.findall(tvm_source)
    if not found or any(_strip_const(f) != _strip_const(_params(prototype)) for f in found):
        raise RuntimeError(f"kernel {name}: TVM signature {found} does not match {prototype}")
    if "TVMBackend" in tvm_source:
        raise RuntimeError(f"kernel {name}: TVM emitted a runtime call (scratch too large?)")
    lines = [ln for ln in tvm_source.splitlines() if not _DROP.match(ln)]
    body = _EXTERN_DECL.sub("", "\n".join(lines))
    body = sig.sub(prototype, body).strip() + "\n"
    # the definition promises gcc that the output (and scratch) alias nothing the kernel
    # reads (the memory plan keeps a step's buffers apart), so byte stores do not force
    # reloads of the parameters; a declaration's top-level qualifiers do not change the ABI
    definition = re.sub(r"\buint8_t \*(y|scratch)\b", r"uint8_t *__restrict \1", prototype)
    body = body.replace(prototype + " {", definition + " {")
    head = f"{banner}\n#include <stdbool.h>\n#include <stdint.h>\n"
    return head + (prelude + "\n" if prelude else "") + body


def _params(prototype: str) -> str:
    return prototype[prototype.index("(") + 1:prototype.rindex(")")]


def _strip_const(params: str) -> list[str]:
    out = []
    for p in params.split(","):
        p = p.replace("const ", "").replace("*", " * ")
        out.append(" ".join(p.split()))
    return out


def lower_to_c(func, name: str, prototype: str, banner: str, config: dict | None = None,
               prelude: str = "") -> str:
    """The whole recipe: scheduled PrimFunc -> standalone C source of one kernel.

    prelude: C inserted after the includes (the DSP micro-kernels the TIR calls)."""
    return standalone_c(lower_to_tvm_c(func, name, config), name, prototype, banner, prelude)
