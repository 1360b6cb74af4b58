// A thread pool for the oneDNN that MindSpore ships (built for a caller-provided thread pool).
//
// Given to a stream by dnnl_threadpool_interop_stream_create, it lets every primitive run on
// all cores with oneDNN's own partitioning. Its workers spin for a while after each job before
// they sleep: waking a sleeping thread costs about 0.1 ms here, which a forward's hundreds of
// primitives would each pay (OpenMP runtimes spin for the same reason).

#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pool.hpp"

namespace {

thread_local bool in_pool = false;

// One parallel_for: its closures are claimed by index, so a worker that wakes late finds none
// left and never touches a closure whose caller has returned.
struct Job {
    const std::function<void(int, int)> *fn;
    int count;
    std::atomic<int> next{0}, done{0};

    Job(const std::function<void(int, int)> *f, int n) : fn(f), count(n) {}

    void run() {
        for (int i = next.fetch_add(1); i < count; i = next.fetch_add(1)) {
            (*fn)(i, count);
            done.fetch_add(1, std::memory_order_release);
        }
    }
};

class SpinningPool final : public threadpool_iface {
public:
    SpinningPool(int threads, int spin_us) : threads_(threads < 1 ? 1 : threads), spin_(spin_us) {
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { work(); });
    }

    ~SpinningPool() override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        for (auto &worker : workers_) worker.join();
    }

    int get_num_threads() const override { return threads_; }
    bool get_in_parallel() const override { return in_pool; }
    uint64_t get_flags() const override { return 0; }  // synchronous: returns when every closure ran

    void parallel_for(int n, const std::function<void(int, int)> &fn) override {
        if (n <= 0) return;
        if (n == 1 || threads_ == 1 || in_pool) {  // nested or trivial: run here
            for (int i = 0; i < n; ++i) fn(i, n);
            return;
        }
        auto job = std::make_shared<Job>(&fn, n);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = job;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        in_pool = true;
        job->run();
        in_pool = false;
        while (job->done.load(std::memory_order_acquire) < n) _mm_pause();
    }

private:
    void work() {
        in_pool = true;
        uint64_t seen = generation_.load();
        for (;;) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_);
            while (generation_.load(std::memory_order_acquire) == seen
                   && std::chrono::steady_clock::now() < until) {
                for (int i = 0; i < 64; ++i) _mm_pause();
            }
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
                seen = generation_.load();
                if (stopping_) return;
                job = job_;
            }
            job->run();
        }
    }

    const int threads_;
    const int spin_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};
    std::shared_ptr<Job> job_;
    bool stopping_ = false;
};

}  // namespace

extern "C" {

// A pool of `threads` (the caller counts as one), its workers spinning `spin_us` microseconds
// for the next job before they sleep. The pointer is what dnnl_threadpool_interop_stream_create takes.
void *zoo_threadpool_create(int threads, int spin_us) {
    return static_cast<threadpool_iface *>(new SpinningPool(threads, spin_us));
}

}
