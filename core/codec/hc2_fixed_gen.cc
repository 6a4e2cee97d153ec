// Generates the codebooks of hc2's fixed-rate mode, trained once for unit-rms Gaussian blocks and
// then frozen (changing an entry is a new format):
//
//   build/tools/hc2_fixed_gen > core/codec/hc2_fixed_tables.cc          (codebook 1)
//   build/tools/hc2_fixed_gen struct > core/codec/hc2_fixed_struct.cc   (codebook 2)
//
// Codebook 1 (below) is 4096 free values per bits k. Codebook 2 (StructMain) is C[w] =
// G[beta(w)] * 2^-5 (hc2_fixed.h): the dither map D is the best of three seeded random GF(2)
// matrices after 8 Lloyd rounds on 8192 training blocks, then G (256 signed bytes) gets 40
// Lloyd rounds on 16384 blocks (each entry the mean of the values decoded through it, the whole
// 16 windows that share it), and is rounded to integers at the end.
//
// Training (in the search's window order, hc2_fixed.h), per bits k in 2..4: 32768 blocks of 128 pseudo-random Gaussian values (splitmix64,
// Box-Muller, seed fixed), each divided by its rms as the encoder does. The codebook starts as
// 4096 pseudo-random Gaussian values; each of 48 Lloyd rounds runs the Viterbi search
// (TrellisSearch) on every block and sets each entry to the mean of the values it decoded (an
// entry nobody used keeps its value). Rounds never increase the training error. Progress and
// the SNR on 4096 held-out blocks go to stderr. Deterministic: fixed chunks summed in order.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/codec/hc2_fixed.h"

namespace {

constexpr int kN = 128;

struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1p-53; }
  double Gauss() {
    return std::sqrt(-2.0 * std::log(Uniform())) * std::cos(6.283185307179586 * Uniform());
  }
};

// Blocks of unit-rms Gaussian data, flattened.
std::vector<float> Blocks(int count, uint64_t seed) {
  Rng rng{seed};
  std::vector<float> u(static_cast<size_t>(count) * kN);
  for (int b = 0; b < count; ++b) {
    double ss = 0;
    float* x = u.data() + static_cast<size_t>(b) * kN;
    for (int i = 0; i < kN; ++i) {
      x[i] = static_cast<float>(rng.Gauss());
      ss += static_cast<double>(x[i]) * x[i];
    }
    const float rms = static_cast<float>(std::sqrt(ss / kN));
    for (int i = 0; i < kN; ++i) x[i] /= rms;
  }
  return u;
}

// One pass over the blocks: the squared error, and per entry the sum and count of the values
// decoded through it (when `sum` is not null).
double Pass(const std::vector<float>& u, int bits, const float* cb, std::vector<double>* sum,
            std::vector<double>* cnt) {
  const int blocks = static_cast<int>(u.size() / kN);
  constexpr int kChunks = 64;
  std::vector<std::vector<double>> sums(kChunks), cnts(kChunks);
  std::vector<double> err(kChunks, 0.0);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      uint8_t sym[kN];
      for (int c = t; c < kChunks; c += threads) {
        sums[c].assign(hc::hc2::kTrellisCodebook, 0.0);
        cnts[c].assign(hc::hc2::kTrellisCodebook, 0.0);
        for (int b = c * blocks / kChunks; b < (c + 1) * blocks / kChunks; ++b) {
          const float* x = u.data() + static_cast<size_t>(b) * kN;
          err[c] += hc::hc2::TrellisSearch(x, kN, bits, cb, sym);
          uint32_t w = 0;
          for (int i = 0; i < kN; ++i) {
            w = ((w << bits) | sym[i]) & (hc::hc2::kTrellisCodebook - 1);
            sums[c][w] += x[i];
            cnts[c][w] += 1;
          }
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  double e = 0;
  for (int c = 0; c < kChunks; ++c) {
    e += err[c];
    for (int w = 0; sum != nullptr && w < hc::hc2::kTrellisCodebook; ++w) {
      (*sum)[w] += sums[c][w];
      (*cnt)[w] += cnts[c][w];
    }
  }
  return e;
}

// Pass() with the sums folded per byte of codebook 2 (beta(w) of the window in decode order).
double StructPass(const std::vector<float>& u, int bits, const uint8_t* d, const float* search_cb,
                  std::vector<double>* gsum, std::vector<double>* gcnt) {
  std::vector<double> sum(hc::hc2::kTrellisCodebook, 0.0), cnt(hc::hc2::kTrellisCodebook, 0.0);
  const double e = Pass(u, bits, search_cb, &sum, &cnt);
  // Pass indexes windows in search order; beta is defined on the decode order.
  std::vector<float> idx(hc::hc2::kTrellisCodebook), sidx(hc::hc2::kTrellisCodebook);
  for (int w = 0; w < hc::hc2::kTrellisCodebook; ++w) {
    idx[w] = static_cast<float>(hc::hc2::StructuredByte(static_cast<uint32_t>(w), bits, d));
  }
  hc::hc2::ToSearchOrder(idx.data(), bits, sidx.data());
  gsum->assign(256, 0.0);
  gcnt->assign(256, 0.0);
  for (int v = 0; v < hc::hc2::kTrellisCodebook; ++v) {
    (*gsum)[static_cast<int>(sidx[v])] += sum[v];
    (*gcnt)[static_cast<int>(sidx[v])] += cnt[v];
  }
  return e;
}

// The search-order codebook of (g, d), g in units of 2^-5 (not yet rounded while training).
std::vector<float> StructBook(const std::vector<double>& g, int bits, const uint8_t* d) {
  std::vector<float> cb(hc::hc2::kTrellisCodebook), search(hc::hc2::kTrellisCodebook);
  for (int w = 0; w < hc::hc2::kTrellisCodebook; ++w) {
    cb[w] = static_cast<float>(g[hc::hc2::StructuredByte(static_cast<uint32_t>(w), bits, d)] *
                               0x1p-5);
  }
  hc::hc2::ToSearchOrder(cb.data(), bits, search.data());
  return search;
}

double Lloyd(const std::vector<float>& u, int bits, const uint8_t* d, int rounds,
             std::vector<double>* g) {
  double e = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<double> sum, cnt;
    const std::vector<float> book = StructBook(*g, bits, d);
    e = StructPass(u, bits, d, book.data(), &sum, &cnt);
    std::fprintf(stderr, "  bits %d round %d train SNR %.4f dB\n", bits, round,
                 10 * std::log10(static_cast<double>(u.size()) / e));
    for (int b = 0; b < 256; ++b) {
      if (cnt[b] > 0) (*g)[b] = sum[b] / cnt[b] * 32.0;
    }
  }
  return e;
}

int StructMain() {
  const std::vector<float> search_set = Blocks(8192, 0x73656172636bull);
  const std::vector<float> train = Blocks(16384, 0x68633266697865ull);
  const std::vector<float> test = Blocks(4096, 0x7465737432ull);
  std::printf(
      "// Generated by core/codec/hc2_fixed_gen.cc (struct); do not edit. Normative (spec-hc2.md "
      "6).\n#include \"core/codec/hc2_fixed.h\"\n\nnamespace hc::hc2 {\nnamespace {\n");
  for (int bits = 2; bits <= 4; ++bits) {
    // Start: G at the Gaussian quantiles (in units of 2^-5), from sorted samples.
    std::vector<double> g0(256);
    {
      Rng q{0x7175616e74ull};
      std::vector<double> smp(1 << 20);
      for (double& v : smp) v = q.Gauss();
      std::sort(smp.begin(), smp.end());
      for (int b = 0; b < 256; ++b) {
        g0[b] = 32.0 * smp[static_cast<size_t>((b + 0.5) / 256 * smp.size())];
      }
    }
    uint8_t best_d[8] = {};
    std::vector<double> best_g;
    double best_e = 0;
    for (int seed = 1; seed <= 3; ++seed) {
      Rng r{0x64697468ull * 16 + static_cast<uint64_t>(bits) * 4 + seed};
      uint8_t d[8];
      for (uint8_t& c : d) c = static_cast<uint8_t>(r.Next() & 0xFF);
      std::vector<double> g = g0;
      const double e = Lloyd(search_set, bits, d, 8, &g);
      std::fprintf(stderr, "bits %d seed %d: SNR %.4f dB after 8 rounds\n", bits, seed,
                   10 * std::log10(static_cast<double>(search_set.size()) / e));
      if (seed == 1 || e < best_e) {
        best_e = e;
        best_g = g;
        std::copy(d, d + 8, best_d);
      }
    }
    Lloyd(train, bits, best_d, 40, &best_g);
    int8_t gq[256];
    std::vector<double> gr(256);
    for (int b = 0; b < 256; ++b) {
      gq[b] = static_cast<int8_t>(std::clamp(std::nearbyint(best_g[b]), -128.0, 127.0));
      gr[b] = gq[b];
    }
    const std::vector<float> book = StructBook(gr, bits, best_d);
    const double e2 = Pass(test, bits, book.data(), nullptr, nullptr);
    std::vector<float> old(hc::hc2::kTrellisCodebook);
    hc::hc2::ToSearchOrder(hc::hc2::TrellisCodebook(bits, 1), bits, old.data());
    const double e1 = Pass(test, bits, old.data(), nullptr, nullptr);
    std::fprintf(stderr, "bits %d held-out SNR: codebook 2 %.4f dB, codebook 1 %.4f dB\n", bits,
                 10 * std::log10(static_cast<double>(test.size()) / e2),
                 10 * std::log10(static_cast<double>(test.size()) / e1));
    std::printf("\nconstexpr uint8_t kStructD%d[8] = {", bits);
    for (int j = 0; j < 8; ++j) std::printf("%s0x%02x", j ? ", " : "", best_d[j]);
    std::printf("};\nconstexpr int8_t kStructG%d[256] = {", bits);
    for (int b = 0; b < 256; ++b) std::printf("%s%d,", b % 16 == 0 ? "\n    " : " ", gq[b]);
    std::printf("\n};\n");
  }
  std::printf(
      "\n}  // namespace\n\nStructuredCodebook TrellisStructure(int bits) {\n"
      "  if (bits == 2) return {kStructG2, kStructD2};\n"
      "  if (bits == 3) return {kStructG3, kStructD3};\n"
      "  return {kStructG4, kStructD4};\n}\n\n}  // namespace hc::hc2\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "struct") return StructMain();
  const std::vector<float> train = Blocks(32768, 0x68633266697865ull);
  const std::vector<float> test = Blocks(4096, 0x7465737432ull);
  std::printf(
      "// Generated by core/codec/hc2_fixed_gen.cc; do not edit. Normative (spec-hc2.md 6).\n"
      "#include \"core/codec/hc2_fixed.h\"\n\nnamespace hc::hc2 {\nnamespace {\n");
  for (int bits = 2; bits <= 4; ++bits) {
    Rng rng{0x636f6465ull + bits};
    std::vector<float> cb(hc::hc2::kTrellisCodebook);
    for (float& v : cb) v = static_cast<float>(rng.Gauss());
    for (int round = 0; round < 48; ++round) {
      std::vector<double> sum(cb.size(), 0.0), cnt(cb.size(), 0.0);
      const double e = Pass(train, bits, cb.data(), &sum, &cnt);
      std::fprintf(stderr, "bits %d round %d train SNR %.4f dB\n", bits, round,
                   10 * std::log10(static_cast<double>(train.size()) / e));
      for (size_t w = 0; w < cb.size(); ++w) {
        if (cnt[w] > 0) cb[w] = static_cast<float>(sum[w] / cnt[w]);
      }
    }
    const double e = Pass(test, bits, cb.data(), nullptr, nullptr);
    std::fprintf(stderr, "bits %d held-out SNR %.4f dB (Gaussian bound %.4f)\n", bits,
                 10 * std::log10(static_cast<double>(test.size()) / e), 6.0206 * bits);
    // Trained in the search's order; stored in the decoder's (the same map both ways).
    std::vector<float> out(cb.size());
    hc::hc2::ToSearchOrder(cb.data(), bits, out.data());
    std::printf("\nconstexpr float kCodebook%d[%d] = {", bits, hc::hc2::kTrellisCodebook);
    for (size_t w = 0; w < out.size(); ++w) {
      std::printf("%s%a,", w % 6 == 0 ? "\n    " : " ", static_cast<double>(out[w]));
    }
    std::printf("\n};\n");
  }
  std::printf(
      "\n}  // namespace\n\nconst float* TrainedCodebook(int bits) {\n"
      "  return bits == 2 ? kCodebook2 : bits == 3 ? kCodebook3 : kCodebook4;\n}\n\n"
      "}  // namespace hc::hc2\n");
  return 0;
}
