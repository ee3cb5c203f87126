#include "base/file.h"

#include <cstring>
#include <fstream>

#include "base/checksum.h"
#include "base/parallel.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd {
namespace {

namespace fs = std::filesystem;

TEST(AtomicFileWriterTest, CommitPublishesAbandonLeavesNothing) {
  testing::TempDir tmp;
  const fs::path p = tmp.path() / "f.bin";
  {
    auto w = AtomicFileWriter::Create(p);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(std::string_view("half")).ok());
    EXPECT_FALSE(fs::exists(p));  // nothing visible before Commit
  }
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  ASSERT_TRUE(WriteFileAtomically(p, "old").ok());
  {
    auto w = AtomicFileWriter::Create(p);
    ASSERT_TRUE((*w)->Append(std::string_view("new content")).ok());
    EXPECT_EQ(*ReadFileToString(p), "old");  // the old file survives until Commit
    ASSERT_TRUE((*w)->Commit().ok());
    EXPECT_FALSE((*w)->Append(std::string_view("x")).ok());
  }
  EXPECT_EQ(*ReadFileToString(p), "new content");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(MappedFileTest, MapsBytesAndReportsMissingFiles) {
  testing::TempDir tmp;
  ASSERT_TRUE(WriteFileAtomically(tmp.path() / "a", "abc").ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.path() / "empty", "").ok());
  auto m = MappedFile::Open(tmp.path() / "a");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(std::string(m->bytes().begin(), m->bytes().end()), "abc");
  EXPECT_TRUE(MappedFile::Open(tmp.path() / "empty")->bytes().empty());
  auto missing = MappedFile::Open(tmp.path() / "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  EXPECT_FALSE(MappedFile::Open(tmp.path()).ok());  // a directory
}

// kResident reads the file into its own memory: the same bytes (across
// several huge-page spans, the last one partial), huge-page aligned, and the
// same errors as a mapping.
TEST(MappedFileTest, ResidentReadsTheSameBytes) {
  testing::TempDir tmp;
  std::string big(5 * (size_t{1} << 20) + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  ASSERT_TRUE(WriteFileAtomically(tmp.path() / "big", big).ok());
  ASSERT_TRUE(WriteFileAtomically(tmp.path() / "empty", "").ok());
  for (FileAccess access : {FileAccess::kMapped, FileAccess::kResident}) {
    SCOPED_TRACE(access == FileAccess::kResident ? "resident" : "mapped");
    auto m = MappedFile::Open(tmp.path() / "big", access);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->access(), access);
    ASSERT_EQ(m->bytes().size(), big.size());
    EXPECT_EQ(std::memcmp(m->bytes().data(), big.data(), big.size()), 0);
    if (access == FileAccess::kResident) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(m->bytes().data()) % (uintptr_t{2} << 20), 0u);
    }
    // Moves hand the bytes over and leave the source empty.
    MappedFile moved = *std::move(m);
    EXPECT_TRUE(m->bytes().empty());
    EXPECT_EQ(std::memcmp(moved.bytes().data(), big.data(), big.size()), 0);
    auto other = MappedFile::Open(tmp.path() / "empty", access);
    ASSERT_TRUE(other.ok());
    EXPECT_TRUE(other->bytes().empty());
    *other = std::move(moved);
    EXPECT_EQ(other->bytes().size(), big.size());
    EXPECT_EQ(other->bytes()[big.size() - 1], static_cast<uint8_t>(big.back()));

    auto missing = MappedFile::Open(tmp.path() / "nope", access);
    EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
    EXPECT_FALSE(MappedFile::Open(tmp.path(), access).ok());  // a directory
  }
}

TEST(ParallelForTest, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    for (size_t n : {0, 1, 5, 1000}) {
      std::vector<int> hits(n, 0);
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) ++hits[i];
      });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << n << " " << threads;
    }
  }
}

TEST(ChecksumTest, StreamingEqualsWholeAndHexRoundTrips) {
  std::vector<uint8_t> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
  std::span<const uint8_t> s(a);
  EXPECT_EQ(Checksum64(s), Checksum64({s.subspan(0, 10), s.subspan(10, 500), s.subspan(510)}));
  EXPECT_NE(Checksum64(s), Checksum64(s.subspan(1)));
  uint64_t back = 0;
  ASSERT_TRUE(ParseChecksumHex(ChecksumHex(Checksum64(s)), &back));
  EXPECT_EQ(back, Checksum64(s));
  EXPECT_FALSE(ParseChecksumHex("xyz", &back));
  EXPECT_FALSE(ParseChecksumHex("0123456789ABCDEF", &back));
}

}  // namespace
}  // namespace packd
