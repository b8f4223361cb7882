// Offline subcommands of rlaifd: train, eval and score without a daemon.
//
//   rlaifd train --pairs TRAIN.jsonl [--eval EVAL.jsonl] --out DIR [--device auto|cpu|cuda]
//                [--preset tiny|small|base] [--epochs N] [--seed N] [--batch-size N]
//                [--lr X] [--max-len N] [--threads N] [--holdout-fraction F]
//   rlaifd eval --model DIR --pairs FILE [--device D]
//   rlaifd score --model DIR [--device D]     (JSONL {"prompt","response"} on stdin)
//
// train and eval print one final JSON line on stdout with at least
// "accuracy", "pairs" and "loss". Without --eval, train holds out a share of
// the prompts by hash (never trains on what it evaluates). Exit codes: 0 ok,
// 1 failure, 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace rlaif::daemon {

int RunTrainCommand(const std::vector<std::string>& args);
int RunEvalCommand(const std::vector<std::string>& args);
int RunScoreCommand(const std::vector<std::string>& args);

}  // namespace rlaif::daemon
