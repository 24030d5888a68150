// Shutting down a thread that runs an io_context.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <thread>

namespace sparkgate::server {

// After the owner posted its own cleanup (which ends with releasing the work guard),
// gives pending handlers up to `grace` to finish, then stops the io_context and joins.
inline void stop_and_join(boost::asio::io_context& io, std::thread& thread,
                          std::chrono::milliseconds grace = std::chrono::seconds(2)) {
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!io.stopped() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  io.stop();
  thread.join();
}

}  // namespace sparkgate::server
