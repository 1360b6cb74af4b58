// A growable buffer aligned to cache lines, for the kernels' scratch memory.
//
// In an unnamed namespace on purpose: each kernel file is compiled for its own instruction set,
// so each keeps its own copy rather than letting the linker pick one built for another.

#pragma once

#include <cstdlib>

namespace {

// Aligned to 64 bytes: an AMX tile whose rows straddle two cache lines loads at a third of the
// speed (measured), and vector loads that straddle lines are slower too.
template <typename T>
class Buffer {
public:
    Buffer() = default;
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    ~Buffer() { std::free(data_); }

    // At least `count` elements (earlier contents not kept when it grows).
    T *get(long count) {
        if (count > size_) {
            std::free(data_);
            data_ = static_cast<T *>(std::aligned_alloc(64, (count * sizeof(T) + 63) / 64 * 64));
            size_ = count;
        }
        return data_;
    }

private:
    T *data_ = nullptr;
    long size_ = 0;
};

}  // namespace
