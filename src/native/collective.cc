// Data-parallel collectives through Gloo (Facebook's collective library, PyTorch's CPU backend):
// a separate addon, rpv_collective.node, built only where Gloo's headers and library are present
// (binding.gyp), so the main addon never depends on it.
//
// Rendezvous: Debian's Gloo has file, hash and Redis stores but no TCP store, so `TcpStore` is a
// small client of the key-value store that rank 0 serves in Node (src/train/distributed.ts) at
// MASTER_ADDR:MASTER_PORT. Gloo then connects every pair of ranks itself (connectFullMesh) and
// runs the collectives (ring all-reduce) over its TCP transport; nothing here reduces numbers.
//
// Exports: join(rank, size, host, port, timeoutMs, localHost) -> Promise (the rendezvous runs
// off the event loop, so rank 0's store keeps answering), allreduceSum(Float32Array |
// Float64Array) in place, leave().
#include <node_api.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gloo/allreduce.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Client of rank 0's store. Requests: 'S' key data, 'G' key (answered once the key exists),
// 'W' keys (answered once all exist), 'H' rank (this connection belongs to that rank). Strings
// and data are a u32 length (little-endian) then the bytes.
class TcpStore : public gloo::rendezvous::Store {
 public:
  TcpStore(const std::string& host, int port, int rank, std::chrono::milliseconds timeout) : where_(host + ":" + std::to_string(port)), timeout_(timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string last = "no attempt";
    // The store may not listen yet (rank 0 starts later): retry until the deadline.
    while (true) {
      fd_ = tryConnect(host, port, &last);
      if (fd_ >= 0) break;
      if (Clock::now() >= deadline) {
        throw std::runtime_error("cannot reach the rendezvous store at " + where_ + " (MASTER_ADDR:MASTER_PORT) within " + std::to_string(timeout.count() / 1000) + " s: " + last + "; check that rank 0 runs and that every rank has the same MASTER_ADDR and MASTER_PORT");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::string msg = "H";
    appendU32(msg, static_cast<uint32_t>(rank));
    sendAll(msg);
  }
  ~TcpStore() override {
    if (fd_ >= 0) close(fd_);
  }

  void set(const std::string& key, const std::vector<char>& data) override {
    std::string msg = "S";
    appendString(msg, key);
    appendString(msg, std::string(data.begin(), data.end()));
    sendAll(msg);
    recvExact(1, "set " + key);
  }
  std::vector<char> get(const std::string& key) override {
    std::string msg = "G";
    appendString(msg, key);
    sendAll(msg);
    const std::string len = recvExact(4, "key " + key);
    uint32_t n = 0;
    std::memcpy(&n, len.data(), 4);
    const std::string data = recvExact(n, "key " + key);
    return std::vector<char>(data.begin(), data.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds&) override {
    std::string msg = "W";
    appendU32(msg, static_cast<uint32_t>(keys.size()));
    for (const auto& k : keys) appendString(msg, k);
    sendAll(msg);
    std::string names;
    for (const auto& k : keys) names += (names.empty() ? "" : ", ") + k;
    recvExact(1, names);
  }

 private:
  static int tryConnect(const std::string& host, int port, std::string* why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
      *why = std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
      return -1;
    }
    int fd = -1;
    for (addrinfo* a = res; a; a = a->ai_next) {
      fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
      *why = std::strerror(errno);
      close(fd);
      fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
  }
  static void appendU32(std::string& s, uint32_t v) {
    char b[4];
    std::memcpy(b, &v, 4);
    s.append(b, 4);
  }
  static void appendString(std::string& s, const std::string& v) {
    appendU32(s, static_cast<uint32_t>(v.size()));
    s += v;
  }
  void sendAll(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("the rendezvous store at " + where_ + " closed the connection (rank 0 stopped?): " + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
  }
  // Reads n bytes, waiting at most the timeout in all (the answer to a get or wait comes once
  // every rank has written its key).
  std::string recvExact(size_t n, const std::string& what) {
    std::string out(n, '\0');
    size_t off = 0;
    const auto deadline = Clock::now() + timeout_;
    while (off < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        throw std::runtime_error("the rendezvous store at " + where_ + " gave no " + what + " within " + std::to_string(timeout_.count() / 1000) + " s: a rank did not join (check that all WORLD_SIZE ranks started with the same MASTER_ADDR and MASTER_PORT)");
      }
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) continue;
      const ssize_t got = recv(fd_, &out[off], n - off, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) throw std::runtime_error("the rendezvous store at " + where_ + " closed the connection while waiting for " + what + " (rank 0 stopped?)");
      off += static_cast<size_t>(got);
    }
    return out;
  }

  std::string where_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
};

struct State {
  std::shared_ptr<gloo::rendezvous::Context> context;
  // Kept open after the rendezvous: rank 0's store sees the connection close when a rank dies.
  std::unique_ptr<TcpStore> store;
  int rank = 0;
  int size = 1;
};
State g_state;

struct JoinWork {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  int rank = 0, size = 1, port = 0;
  int64_t timeoutMs = 60000;
  std::string host, localHost;
  std::string error;
  std::shared_ptr<gloo::rendezvous::Context> context;
  std::unique_ptr<TcpStore> store;
};

void JoinExecute(napi_env, void* data) {
  auto* w = static_cast<JoinWork*>(data);
  try {
    const std::chrono::milliseconds timeout(w->timeoutMs);
    w->store = std::make_unique<TcpStore>(w->host, w->port, w->rank, timeout);
    gloo::transport::tcp::attr attr;
    attr.hostname = w->localHost;
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(w->rank, w->size);
    ctx->setTimeout(timeout);
    ctx->connectFullMesh(*w->store, dev);
    w->context = ctx;
  } catch (const std::exception& e) {
    w->error = e.what();
  } catch (...) {
    w->error = "unknown C++ exception";
  }
}

void JoinComplete(napi_env env, napi_status, void* data) {
  auto* w = static_cast<JoinWork*>(data);
  if (w->error.empty()) {
    g_state.context = w->context;
    g_state.store = std::move(w->store);
    g_state.rank = w->rank;
    g_state.size = w->size;
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, w->deferred, undef);
  } else {
    napi_value msg, err, code;
    napi_create_string_utf8(env, w->error.c_str(), NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "ERR_RPV_COLLECTIVE", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
  }
  napi_delete_async_work(env, w->work);
  delete w;
}

napi_value Throw(napi_env env, const std::string& message) {
  napi_throw_error(env, "ERR_RPV_COLLECTIVE", message.c_str());
  return nullptr;
}

std::string StringArg(napi_env env, napi_value v) {
  size_t len = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &len);
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, v, &s[0], len + 1, &len);
  return s;
}

napi_value Join(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 6) return Throw(env, "join(rank, size, host, port, timeoutMs, localHost): 6 arguments expected");
  if (g_state.context) return Throw(env, "join: this process already joined a group (leave() first)");
  auto* w = new JoinWork();
  napi_get_value_int32(env, argv[0], &w->rank);
  napi_get_value_int32(env, argv[1], &w->size);
  w->host = StringArg(env, argv[2]);
  napi_get_value_int32(env, argv[3], &w->port);
  napi_get_value_int64(env, argv[4], &w->timeoutMs);
  w->localHost = StringArg(env, argv[5]);
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "rpvCollectiveJoin", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, nullptr, name, JoinExecute, JoinComplete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return promise;
}

// Sums a Float32Array or Float64Array over every rank, in place (Gloo's ring all-reduce).
napi_value AllreduceSum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (!g_state.context) return Throw(env, "allreduceSum: not joined (call join first)");
  bool isTyped = false;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &isTyped) != napi_ok || !isTyped) return Throw(env, "allreduceSum: a Float32Array or Float64Array expected");
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_get_typedarray_info(env, argv[0], &type, &length, &data, nullptr, nullptr);
  if (length == 0) return nullptr;
  try {
    gloo::AllreduceOptions opts(g_state.context);
    if (type == napi_float32_array) {
      opts.setOutput(static_cast<float*>(data), length);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    } else if (type == napi_float64_array) {
      opts.setOutput(static_cast<double*>(data), length);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<double>));
    } else {
      return Throw(env, "allreduceSum: a Float32Array or Float64Array expected");
    }
    opts.setTag(0);
    gloo::allreduce(opts);
  } catch (const std::exception& e) {
    return Throw(env, e.what());
  }
  return nullptr;
}

napi_value Leave(napi_env env, napi_callback_info) {
  g_state.context.reset();
  g_state.store.reset();
  return nullptr;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"join", nullptr, Join, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"allreduceSum", nullptr, AllreduceSum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"leave", nullptr, Leave, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
