#include "rtcgw/task_queue_pool.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "api/task_queue/task_queue_base.h"

namespace rtcgw {

namespace {
using Clock = std::chrono::steady_clock;
}

class PooledTaskQueue;

class TaskQueuePool : public std::enable_shared_from_this<TaskQueuePool> {
 public:
  explicit TaskQueuePool(size_t threads) {
    for (size_t i = 0; i < threads; ++i) {
      workers_.emplace_back([this] { Run(); });
    }
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    // Pending work is dropped outside the lock: task destructors may post.
    std::deque<std::shared_ptr<PooledTaskQueue>> ready;
    std::vector<Delayed> delayed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready.swap(ready_);
      while (!delayed_.empty()) {
        delayed.push_back(std::move(const_cast<Delayed&>(delayed_.top())));
        delayed_.pop();
      }
    }
  }

  void Schedule(std::shared_ptr<PooledTaskQueue> q) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(std::move(q));
    }
    cv_.notify_one();
  }

  void ScheduleDelayed(std::weak_ptr<PooledTaskQueue> q,
                       absl::AnyInvocable<void() &&> task,
                       webrtc::TimeDelta delay) {
    auto when = Clock::now() + std::chrono::microseconds(delay.us());
    bool earliest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      earliest = delayed_.empty() || when < delayed_.top().when;
      delayed_.push(Delayed{when, seq_++, std::move(q), std::move(task)});
    }
    if (earliest) cv_.notify_one();
  }

 private:
  struct Delayed {
    Clock::time_point when;
    uint64_t seq;
    std::weak_ptr<PooledTaskQueue> queue;
    absl::AnyInvocable<void() &&> task;
    bool operator>(const Delayed& o) const {
      return when != o.when ? when > o.when : seq > o.seq;
    }
  };

  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<PooledTaskQueue>> ready_;
  std::priority_queue<Delayed, std::vector<Delayed>, std::greater<Delayed>>
      delayed_;
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

class PooledTaskQueue final
    : public webrtc::TaskQueueBase,
      public std::enable_shared_from_this<PooledTaskQueue> {
 public:
  explicit PooledTaskQueue(std::shared_ptr<TaskQueuePool> pool)
      : pool_(std::move(pool)) {}

  // Keeps the queue alive until Delete(); set right after construction.
  void Adopt() { self_ = shared_from_this(); }

  void Delete() override {
    std::deque<absl::AnyInvocable<void() &&>> dropped;
    std::shared_ptr<PooledTaskQueue> self;
    {
      std::unique_lock<std::mutex> lock(mu_);
      deleted_ = true;
      dropped.swap(tasks_);
      if (running_on_ != std::thread::id() &&
          running_on_ != std::this_thread::get_id()) {
        idle_.wait(lock, [this] { return running_on_ == std::thread::id(); });
      }
      self.swap(self_);
    }
    dropped.clear();
    // `self` may be the last reference: the queue dies here or when the
    // worker that is running it (this very thread) lets go.
  }

  void PostTask(absl::AnyInvocable<void() &&> task) override {
    bool schedule = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (deleted_) return;
      tasks_.push_back(std::move(task));
      if (!scheduled_) {
        scheduled_ = true;
        schedule = true;
      }
    }
    if (schedule) pool_->Schedule(shared_from_this());
  }

  void PostDelayedTask(absl::AnyInvocable<void() &&> task,
                       webrtc::TimeDelta delay) override {
    pool_->ScheduleDelayed(weak_from_this(), std::move(task), delay);
  }

  void PostDelayedHighPrecisionTask(absl::AnyInvocable<void() &&> task,
                                    webrtc::TimeDelta delay) override {
    PostDelayedTask(std::move(task), delay);
  }

  // Runs one task on the calling pool thread; reschedules the queue if more
  // are pending so that queues take turns fairly.
  void RunOne() {
    absl::AnyInvocable<void() &&> task;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (deleted_ || tasks_.empty()) {
        scheduled_ = false;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
      running_on_ = std::this_thread::get_id();
    }
    {
      CurrentTaskQueueSetter current(this);
      std::move(task)();
      task = nullptr;
    }
    bool again;
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_on_ = std::thread::id();
      again = !deleted_ && !tasks_.empty();
      if (!again) scheduled_ = false;
    }
    idle_.notify_all();
    if (again) pool_->Schedule(shared_from_this());
  }

 private:
  std::shared_ptr<TaskQueuePool> pool_;
  std::shared_ptr<PooledTaskQueue> self_;
  std::mutex mu_;
  std::condition_variable idle_;
  std::deque<absl::AnyInvocable<void() &&>> tasks_;
  bool scheduled_ = false;
  bool deleted_ = false;
  std::thread::id running_on_;
};

void TaskQueuePool::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    // Move due delayed tasks onto their queues.
    auto now = Clock::now();
    while (!delayed_.empty() && delayed_.top().when <= now) {
      Delayed d = std::move(const_cast<Delayed&>(delayed_.top()));
      delayed_.pop();
      lock.unlock();
      if (auto q = d.queue.lock()) q->PostTask(std::move(d.task));
      d.task = nullptr;  // dropped outside the lock when the queue is gone
      lock.lock();
      now = Clock::now();
    }
    if (!ready_.empty()) {
      auto q = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      q->RunOne();
      q.reset();
      lock.lock();
      continue;
    }
    if (delayed_.empty()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, delayed_.top().when);
    }
  }
}

PooledTaskQueueFactory::PooledTaskQueueFactory(size_t threads)
    : pool_(std::make_shared<TaskQueuePool>(threads == 0 ? 1 : threads)) {}

PooledTaskQueueFactory::~PooledTaskQueueFactory() { pool_->Stop(); }

std::unique_ptr<webrtc::TaskQueueBase, webrtc::TaskQueueDeleter>
PooledTaskQueueFactory::CreateTaskQueue(absl::string_view /*name*/,
                                        Priority /*priority*/) const {
  auto q = std::make_shared<PooledTaskQueue>(pool_);
  q->Adopt();
  return std::unique_ptr<webrtc::TaskQueueBase, webrtc::TaskQueueDeleter>(
      q.get());
}

}  // namespace rtcgw
