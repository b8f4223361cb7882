// The per-dimension head mask, checked on the gradients: a pair trains the
// shared backbone and its own dimension's head, never another head. Uses the
// trainer's private network header (and so LibTorch).
#include <gtest/gtest.h>

#include "transformer.h"

namespace rlaif::trainer {
namespace {

// Head gradients [H, D] and [H] after backward() of the mean BT loss of
// `pairs` pairs whose chosen/rejected sequences are random token ids, all of
// dimension (head) heads[i].
struct Grads {
  torch::Tensor head_weight, head_bias, tok_emb;
};

Grads BackwardOn(RewardTransformer& net, const std::vector<int64_t>& heads) {
  const int64_t n = static_cast<int64_t>(heads.size());
  torch::manual_seed(3);
  // Rows: n chosen, then n rejected; 10 real tokens each (ids above the
  // special ones), END last.
  auto ids = torch::randint(300, 500, {2 * n, 10}, torch::kLong);
  auto lengths = torch::full({2 * n}, 10, torch::kLong);
  std::vector<int64_t> seq_heads = heads;
  seq_heads.insert(seq_heads.end(), heads.begin(), heads.end());
  auto head_ids = torch::tensor(seq_heads, torch::kLong);
  net->zero_grad();
  auto scores = SelectHeads(net->forward(ids, lengths), head_ids);
  auto loss =
      BradleyTerryLossTensor(scores.slice(0, 0, n) - scores.slice(0, n, 2 * n), torch::ones({n}))
          .mean();
  loss.backward();
  Grads g;
  for (const auto& item : net->named_parameters()) {
    if (item.key() == "head.weight") g.head_weight = item.value().grad().clone();
    if (item.key() == "head.bias") g.head_bias = item.value().grad().clone();
    if (item.key() == "tok_emb.weight") g.tok_emb = item.value().grad().clone();
  }
  return g;
}

TEST(HeadMask, APairOfOneDimensionLeavesOtherHeadsGradientsAtZero) {
  ModelConfig c;
  c.vocab_size = 512, c.max_len = 16, c.d_model = 32, c.layers = 1, c.heads = 2;
  c.score_heads = 3;
  RewardTransformer net(c);
  net->InitWeights(7);
  ASSERT_EQ(
      net->forward(torch::zeros({2, 4}, torch::kLong), torch::full({2}, 4, torch::kLong)).sizes(),
      (std::vector<int64_t>{2, 3}));

  // Pairs of dimension 0 only: heads 1 and 2 get exactly zero gradient; head
  // 0 and the shared backbone get some.
  Grads only_a = BackwardOn(net, {0, 0, 0, 0});
  EXPECT_GT(only_a.head_weight[0].abs().sum().item<double>(), 0);
  // (A head's bias cancels in r_chosen - r_rejected: its gradient is 0 anyway.)
  EXPECT_GT(only_a.tok_emb.abs().sum().item<double>(), 0);
  for (int h : {1, 2}) {
    EXPECT_EQ(only_a.head_weight[h].abs().sum().item<double>(), 0.0) << h;
    EXPECT_EQ(only_a.head_bias[h].item<double>(), 0.0) << h;
  }

  // Mixed: dimension 1's pairs reach head 1; head 2 still has none. And
  // head 0's gradient depends only on its own pairs: the same batch with the
  // other two pairs moved from dimension 1 to dimension 2 leaves it unchanged.
  Grads mixed = BackwardOn(net, {0, 0, 1, 1});
  EXPECT_GT(mixed.head_weight[1].abs().sum().item<double>(), 0);
  EXPECT_EQ(mixed.head_weight[2].abs().sum().item<double>(), 0.0);
  Grads moved = BackwardOn(net, {0, 0, 2, 2});
  EXPECT_TRUE(torch::equal(mixed.head_weight[0], moved.head_weight[0]));
  EXPECT_TRUE(torch::equal(mixed.head_bias[0], moved.head_bias[0]));
  EXPECT_EQ(moved.head_weight[1].abs().sum().item<double>(), 0.0);
  EXPECT_GT(moved.head_weight[2].abs().sum().item<double>(), 0);
}

}  // namespace
}  // namespace rlaif::trainer
