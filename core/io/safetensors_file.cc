#include "core/io/safetensors_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace hc {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    default: return absl::UnavailableError(msg);
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": file has ", size, " bytes, fewer than the 8-byte header length"));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (m == MAP_FAILED) return ErrnoStatus(errno, "cannot map", path);
  f->map_ = static_cast<const uint8_t*>(m);
  f->map_size_ = size;
  HC_ASSIGN_OR_RETURN(uint64_t n, ParseHeaderLength(f->map_, size, path));
  absl::string_view json(reinterpret_cast<const char*>(f->map_ + 8), n);
  HC_ASSIGN_OR_RETURN(f->header_, ValidateSafetensorsHeader(json, size - 8 - n, path));
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::Span<const uint8_t> SafetensorsFile::TensorData(size_t i) const {
  const TensorInfo& t = header_.tensors[i];
  return absl::Span<const uint8_t>(map_ + header_.data_start() + t.begin, t.nbytes());
}

void SafetensorsFile::Advise(size_t i, int advice) const {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto data = TensorData(i);
  uintptr_t b = reinterpret_cast<uintptr_t>(data.data());
  uintptr_t e = b + data.size();
  if (advice == MADV_DONTNEED) {
    b = (b + page - 1) / page * page;  // only pages wholly inside the tensor
    e = e / page * page;
  } else {
    b = b / page * page;
  }
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, advice);
}

void SafetensorsFile::Prefetch(size_t i) const { Advise(i, MADV_WILLNEED); }
void SafetensorsFile::Release(size_t i) const { Advise(i, MADV_DONTNEED); }

// Writes `text` to `path` atomically (temp file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view text, bool sync) {
  std::string tmpl = absl::StrCat(path, ".tmp-XXXXXX");
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return absl::UnavailableError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
  ::fchmod(fd, 0644);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t r = ::write(fd, text.data() + done, text.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      absl::Status s = absl::UnavailableError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
      ::close(fd);
      ::unlink(tmpl.c_str());
      return s;
    }
    done += static_cast<size_t>(r);
  }
  if ((sync && ::fsync(fd) != 0) || ::close(fd) != 0 || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    ::unlink(tmpl.c_str());
    return absl::UnavailableError(absl::StrCat(path, ": cannot write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

bool SetDirectIo(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "cannot stat", path);
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", st.st_size, " bytes exceeds the limit of ", max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t r = ::read(fd.get(), out.data() + done, out.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return ErrnoStatus(r < 0 ? errno : EIO, "cannot read", path);
    done += static_cast<size_t>(r);
  }
  return out;
}

void ForEachRegularFile(const std::string& root,
                        absl::FunctionRef<void(const std::string& path, const struct stat& st)> fn) {
  std::vector<std::string> dirs = {root};
  while (!dirs.empty()) {
    const std::string dir = std::move(dirs.back());
    dirs.pop_back();
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) continue;  // vanished or unreadable: nothing under it to count
    while (const dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      std::string path = absl::StrCat(dir, "/", e->d_name);
      if (S_ISDIR(st.st_mode)) {
        dirs.push_back(std::move(path));
      } else if (S_ISREG(st.st_mode)) {
        fn(path, st);
      }
    }
    ::closedir(d);
  }
}

}  // namespace hc
