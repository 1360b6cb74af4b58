// The interface of a thread pool given to oneDNN: the virtual methods of
// dnnl::threadpool_interop::threadpool_iface (dnnl_threadpool_iface.hpp), in its order, since
// oneDNN calls them through that vtable. Our kernels use the same pool.

#pragma once

#include <cstdint>
#include <functional>

struct threadpool_iface {
    virtual int get_num_threads() const = 0;
    virtual bool get_in_parallel() const = 0;
    // Runs fn(i, n) for i in [0, n), returning when all have run (our pool is synchronous).
    virtual void parallel_for(int n, const std::function<void(int, int)> &fn) = 0;
    virtual uint64_t get_flags() const = 0;
    virtual ~threadpool_iface() {}
};
