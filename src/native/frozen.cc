// Every call names its operands as (array, offset) pairs into Float32Arrays (the tfjs wasm heap
// in practice) and weight descriptors [mapId, byteOffset, dtype, rows, cols] into mapped files.
// Every index a call will touch is checked before any work starts; violations throw
// ERR_RPV_FROZEN naming the operand.
#include "frozen.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "half.h"
#include "mapped.h"
#include "napi_exports.h"
#include "xent.h"

namespace rpv {

namespace {

napi_value fail(napi_env env, const std::string& message, bool typeError = false) {
  if (typeError) {
    napi_throw_type_error(env, "ERR_RPV_FROZEN", message.c_str());
  } else {
    napi_throw_error(env, "ERR_RPV_FROZEN", message.c_str());
  }
  return nullptr;
}

struct Floats {
  float* data = nullptr;
  size_t length = 0;
};

bool floatsArg(napi_env env, napi_value v, Floats* out) {
  bool typed = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_is_typedarray(env, v, &typed) != napi_ok || !typed) return false;
  if (napi_get_typedarray_info(env, v, &type, &out->length, &data, nullptr, nullptr) != napi_ok) return false;
  if (type != napi_float32_array) return false;
  out->data = static_cast<float*>(data);
  return true;
}

bool int32Arg(napi_env env, napi_value v, const int32_t** out, size_t* length) {
  bool typed = false;
  napi_typedarray_type type;
  void* data = nullptr;
  if (napi_is_typedarray(env, v, &typed) != napi_ok || !typed) return false;
  if (napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok) return false;
  if (type != napi_int32_array) return false;
  *out = static_cast<const int32_t*>(data);
  return true;
}

bool isNullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return true;
  return t == napi_undefined || t == napi_null;
}

bool count(napi_env env, napi_value v, int64_t* out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > 9e15) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

// A weight matrix [rows, cols] inside a mapped file.
struct Weight {
  std::shared_ptr<const Mapping> map;
  const void* data = nullptr;
  DType type = DType::kF32;
  int64_t rows = 0, cols = 0;
};

// desc: Float64Array [mapId, byteOffset, dtype, rows, cols]; dtype 0 F32, 1 F16, 2 BF16.
bool weightArg(napi_env env, napi_value v, const char* what, Weight* w, std::string* error) {
  bool typed = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_is_typedarray(env, v, &typed) != napi_ok || !typed ||
      napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || length != 5) {
    *error = std::string(what) + " must be a Float64Array [mapId, byteOffset, dtype, rows, cols]";
    return false;
  }
  const double* d = static_cast<const double*>(data);
  for (int i = 0; i < 5; ++i) {
    if (!std::isfinite(d[i]) || d[i] < 0 || d[i] != std::floor(d[i]) || d[i] > 9e15) {
      *error = std::string(what) + ": descriptor field " + std::to_string(i) + " must be a non-negative integer";
      return false;
    }
  }
  const int dtype = static_cast<int>(d[2]);
  if (dtype > 2) {
    *error = std::string(what) + ": unknown dtype code " + std::to_string(dtype);
    return false;
  }
  w->map = findMapping(static_cast<int64_t>(d[0]));
  if (!w->map) {
    *error = std::string(what) + ": mapping " + std::to_string(static_cast<int64_t>(d[0])) + " is not open (unmapped, or never mapped)";
    return false;
  }
  w->type = static_cast<DType>(dtype);
  w->rows = static_cast<int64_t>(d[3]);
  w->cols = static_cast<int64_t>(d[4]);
  const int64_t offset = static_cast<int64_t>(d[1]);
  const int64_t bytes = w->rows * w->cols * dtypeBytes(w->type);
  if (offset % dtypeBytes(w->type) != 0) {
    *error = std::string(what) + ": byte offset " + std::to_string(offset) + " in " + w->map->path + " is not aligned to its element size";
    return false;
  }
  if (offset + bytes > w->map->bytes) {
    *error = std::string(what) + ": bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) + ") lie outside " +
             w->map->path + " (" + std::to_string(w->map->bytes) + " bytes)";
    return false;
  }
  w->data = w->map->data + offset;
  return true;
}

bool fits(int64_t offset, int64_t floats, size_t length) {
  return offset >= 0 && floats >= 0 && static_cast<uint64_t>(offset + floats) <= length;
}

// mapFile(path) -> [id, bytes]
napi_value MapFile(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], nullptr, 0, &len) != napi_ok) {
    return fail(env, "rpv frozen: mapFile(path): path must be a string", true);
  }
  std::string path(len, '\0');
  napi_get_value_string_utf8(env, argv[0], &path[0], len + 1, &len);
  std::string error;
  const int64_t id = mapFile(path, &error);
  if (id == 0) return fail(env, "rpv frozen: " + error);
  auto m = findMapping(id);
  napi_value out, a, b;
  napi_create_array_with_length(env, 2, &out);
  napi_create_double(env, static_cast<double>(id), &a);
  napi_create_double(env, static_cast<double>(m->bytes), &b);
  napi_set_element(env, out, 0, a);
  napi_set_element(env, out, 1, b);
  return out;
}

napi_value UnmapFile(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t id = 0;
  if (argc < 1 || !count(env, argv[0], &id)) return fail(env, "rpv frozen: unmapFile(id): id must be a mapping id", true);
  napi_value out;
  napi_get_boolean(env, unmapFile(id), &out);
  return out;
}

napi_value MappedResident(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t id = 0;
  if (argc < 1 || !count(env, argv[0], &id)) return fail(env, "rpv frozen: mappedResident(id): id must be a mapping id", true);
  napi_value out;
  napi_create_double(env, static_cast<double>(residentBytes(id)), &out);
  return out;
}

// frozenMatmul(heap, xOff, rows, weight, transpose, outOff, bias?)
//   transpose = true:  out[rows, W.rows] = x[rows, W.cols] W^T (+ bias[W.rows])   (forward)
//   transpose = false: out[rows, W.cols] = x[rows, W.rows] W                       (input gradient)
napi_value FrozenMatmul(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 6) return fail(env, "rpv frozen: frozenMatmul(heap, xOff, rows, weight, transpose, outOff[, bias]) needs 6 arguments", true);
  Floats heap, bias;
  if (!floatsArg(env, argv[0], &heap)) return fail(env, "rpv frozen: frozenMatmul: heap must be a Float32Array", true);
  int64_t xOff = 0, rows = 0, outOff = 0;
  if (!count(env, argv[1], &xOff) || !count(env, argv[2], &rows) || !count(env, argv[5], &outOff)) {
    return fail(env, "rpv frozen: frozenMatmul: xOff, rows and outOff must be non-negative integers", true);
  }
  Weight w;
  std::string error;
  if (!weightArg(env, argv[3], "frozenMatmul: weight", &w, &error)) return fail(env, "rpv frozen: " + error, true);
  bool transpose = false;
  if (napi_get_value_bool(env, argv[4], &transpose) != napi_ok) return fail(env, "rpv frozen: frozenMatmul: transpose must be a boolean", true);
  const bool hasBias = argc > 6 && !isNullish(env, argv[6]);
  if (hasBias && !floatsArg(env, argv[6], &bias)) return fail(env, "rpv frozen: frozenMatmul: bias must be a Float32Array or null", true);
  const int64_t inF = transpose ? w.cols : w.rows;
  const int64_t outF = transpose ? w.rows : w.cols;
  if (!fits(xOff, rows * inF, heap.length)) return fail(env, "rpv frozen: frozenMatmul: input [" + std::to_string(rows) + ", " + std::to_string(inF) + "] at " + std::to_string(xOff) + " lies outside the heap");
  if (!fits(outOff, rows * outF, heap.length)) return fail(env, "rpv frozen: frozenMatmul: output [" + std::to_string(rows) + ", " + std::to_string(outF) + "] at " + std::to_string(outOff) + " lies outside the heap");
  if (hasBias && static_cast<int64_t>(bias.length) != outF) {
    return fail(env, "rpv frozen: frozenMatmul: bias has " + std::to_string(bias.length) + " values, the output has " + std::to_string(outF) + " columns");
  }
  if (rows == 0 || outF == 0) return nullptr;
  GemmArgs g;
  g.m = rows;
  g.n = outF;
  g.k = inF;
  g.a = heap.data + xOff;
  g.lda = inF;
  g.b = w.data;
  g.bType = w.type;
  g.transB = transpose;
  g.ldb = w.cols;
  g.c = heap.data + outOff;
  g.ldc = outF;
  if (hasBias) {
    g.bias = bias.data;
    g.biasStride[2] = 1;
  }
  withPool([&](Isa isa, ThreadPool* pool) { sgemm(g, isa, pool); });
  return nullptr;
}

// gatherRows(heap, outOff, table, ids): out[i, :] = table[ids[i], :] as float32.
napi_value GatherRows(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 4) return fail(env, "rpv frozen: gatherRows(heap, outOff, table, ids) needs 4 arguments", true);
  Floats heap;
  if (!floatsArg(env, argv[0], &heap)) return fail(env, "rpv frozen: gatherRows: heap must be a Float32Array", true);
  int64_t outOff = 0;
  if (!count(env, argv[1], &outOff)) return fail(env, "rpv frozen: gatherRows: outOff must be a non-negative integer", true);
  Weight t;
  std::string error;
  if (!weightArg(env, argv[2], "gatherRows: table", &t, &error)) return fail(env, "rpv frozen: " + error, true);
  const int32_t* ids = nullptr;
  size_t n = 0;
  if (!int32Arg(env, argv[3], &ids, &n)) return fail(env, "rpv frozen: gatherRows: ids must be an Int32Array", true);
  if (!fits(outOff, static_cast<int64_t>(n) * t.cols, heap.length)) return fail(env, "rpv frozen: gatherRows: output lies outside the heap");
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= t.rows) {
      return fail(env, "rpv frozen: gatherRows: id " + std::to_string(ids[i]) + " at position " + std::to_string(i) + " is outside the table's " + std::to_string(t.rows) + " rows");
    }
  }
  float* out = heap.data + outOff;
  for (size_t i = 0; i < n; ++i) {
    const int64_t r = ids[i];
    float* o = out + static_cast<int64_t>(i) * t.cols;
    switch (t.type) {
      case DType::kF32:
        std::memcpy(o, static_cast<const float*>(t.data) + r * t.cols, t.cols * sizeof(float));
        break;
      case DType::kF16: {
        const uint16_t* s = static_cast<const uint16_t*>(t.data) + r * t.cols;
        for (int64_t j = 0; j < t.cols; ++j) o[j] = f16ToF32(s[j]);
        break;
      }
      case DType::kBF16: {
        const uint16_t* s = static_cast<const uint16_t*>(t.data) + r * t.cols;
        for (int64_t j = 0; j < t.cols; ++j) o[j] = bf16ToF32(s[j]);
        break;
      }
    }
  }
  return nullptr;
}

// crossEntropy(heap, hOff, rows, head, targets, loss, dhOff, chunkRows): loss[i] = -log
// softmax(h_i head^T)[targets[i]]; with dhOff >= 0, heap[dhOff..] = d(sum loss)/dh [rows, hidden].
napi_value CrossEntropy(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 8) return fail(env, "rpv frozen: crossEntropy(heap, hOff, rows, head, targets, loss, dhOff, chunkRows) needs 8 arguments", true);
  Floats heap, loss;
  if (!floatsArg(env, argv[0], &heap)) return fail(env, "rpv frozen: crossEntropy: heap must be a Float32Array", true);
  int64_t hOff = 0, rows = 0, chunkRows = 0;
  if (!count(env, argv[1], &hOff) || !count(env, argv[2], &rows) || !count(env, argv[7], &chunkRows) || chunkRows < 1) {
    return fail(env, "rpv frozen: crossEntropy: hOff, rows must be non-negative integers and chunkRows positive", true);
  }
  Weight head;
  std::string error;
  if (!weightArg(env, argv[3], "crossEntropy: head", &head, &error)) return fail(env, "rpv frozen: " + error, true);
  const int32_t* targets = nullptr;
  size_t nTargets = 0;
  if (!int32Arg(env, argv[4], &targets, &nTargets) || static_cast<int64_t>(nTargets) != rows) {
    return fail(env, "rpv frozen: crossEntropy: targets must be an Int32Array of one id per row", true);
  }
  if (!floatsArg(env, argv[5], &loss) || static_cast<int64_t>(loss.length) != rows) {
    return fail(env, "rpv frozen: crossEntropy: loss must be a Float32Array of one value per row", true);
  }
  double dhOffD = -1;
  if (napi_get_value_double(env, argv[6], &dhOffD) != napi_ok || !std::isfinite(dhOffD)) {
    return fail(env, "rpv frozen: crossEntropy: dhOff must be a number (-1 for no gradient)", true);
  }
  const int64_t hidden = head.cols;
  if (!fits(hOff, rows * hidden, heap.length)) return fail(env, "rpv frozen: crossEntropy: hidden states lie outside the heap");
  const bool grad = dhOffD >= 0;
  if (grad && !fits(static_cast<int64_t>(dhOffD), rows * hidden, heap.length)) return fail(env, "rpv frozen: crossEntropy: gradient output lies outside the heap");
  for (int64_t i = 0; i < rows; ++i) {
    if (targets[i] < 0 || targets[i] >= head.rows) {
      return fail(env, "rpv frozen: crossEntropy: target " + std::to_string(targets[i]) + " of row " + std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(head.rows) + ")");
    }
  }
  XentArgs x;
  x.h = heap.data + hOff;
  x.m = rows;
  x.hidden = hidden;
  x.head = head.data;
  x.headType = head.type;
  x.vocab = head.rows;
  x.targets = targets;
  x.loss = loss.data;
  x.dh = grad ? heap.data + static_cast<int64_t>(dhOffD) : nullptr;
  x.chunkRows = chunkRows;
  withPool([&](Isa isa, ThreadPool* pool) { crossEntropy(x, isa, pool); });
  return nullptr;
}

}  // namespace

bool registerFrozen(napi_env env, napi_value exports) {
  if (!mappingSupported()) return true;  // JS sees no mapFile and keeps weights in tfjs tensors
  return exportFunctions(env, exports,
                         {{"mapFile", MapFile},
                          {"unmapFile", UnmapFile},
                          {"mappedResident", MappedResident},
                          {"frozenMatmul", FrozenMatmul},
                          {"gatherRows", GatherRows},
                          {"crossEntropy", CrossEntropy}});
}

}  // namespace rpv
