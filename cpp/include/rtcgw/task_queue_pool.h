// A TaskQueueFactory whose task queues share a fixed pool of OS threads.
//
// Design notes
// ------------
// libwebrtc creates task queues per call: every PeerConnection's Call owns an
// "rtp_send_controller" queue and every audio send stream an "AudioEncoder"
// queue. With the stock factory (one thread per queue) the thread count grows
// by two or more per call, which the gateway must not do. Here a task queue is
// only a serial strand: its tasks run one at a time, in order, on whichever
// pool thread is free, and TaskQueueBase::Current() is set while they run.
//
// Threads: `threads` workers, created in the constructor, joined in the
// destructor. Delayed tasks sit in one heap ordered by deadline; whichever
// worker wakes first moves due tasks onto their queues.
//
// Ownership: the factory owns the pool; each queue is shared between its owner
// (released by Delete()) and the worker running it. Delete() drops pending
// tasks and waits for a task running on another thread, as TaskQueueBase
// requires.
#pragma once

#include <memory>

#include "api/task_queue/task_queue_factory.h"

namespace rtcgw {

class TaskQueuePool;

class PooledTaskQueueFactory final : public webrtc::TaskQueueFactory {
 public:
  explicit PooledTaskQueueFactory(size_t threads);
  ~PooledTaskQueueFactory() override;

  std::unique_ptr<webrtc::TaskQueueBase, webrtc::TaskQueueDeleter>
  CreateTaskQueue(absl::string_view name, Priority priority) const override;

 private:
  std::shared_ptr<TaskQueuePool> pool_;
};

}  // namespace rtcgw
