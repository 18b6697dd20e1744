#!/usr/bin/python3
"""test_metrics.py — the metrics of `imgset predict` and `imgset train` against values
computed here independently, with numpy, the way scikit-learn defines them.

From predict's per-image labels and logits: the confusion matrix, accuracy, top-5 accuracy
(more than 10 classes; ties rank the lower class first, as the argmax does), per-class
precision, recall and F1 with zero_division=0, support, and macro-F1 over the classes that
occur as a label or a prediction (f1_score(average="macro") without labels=). A 200-class
set (tinyimagenet-like) and a 10-class one (cifar10-like, where top-5 is null). train's JSON
"test" section must agree with its own confusion matrix and its last epoch; the terminal's
worst classes must be the lowest F1s. Prints TAP.
"""
import json
import os

import numpy as np

import tap
from tap import ok

if not os.access(tap.IMGSET, os.X_OK):
    tap.skip_all("test_metrics", "imgset CLI not built (%s)" % tap.IMGSET)

TOL = 1e-6   # the JSON prints 6 decimals


def reference(labels, logits, K):
    """Every metric, computed from scratch."""
    pred = logits.argmax(1)   # numpy's argmax takes the first maximum, as ours
    confusion = np.zeros((K, K), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    x_label = logits[np.arange(len(labels)), labels]
    ahead = (logits > x_label[:, None]).sum(1) + \
        ((logits == x_label[:, None]) & (np.arange(K)[None, :] < labels[:, None])).sum(1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(1), confusion.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = 2 * tp + (predicted - tp) + (support - tp)
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    present = (support > 0) | (predicted > 0)
    return {"confusion": confusion, "accuracy": float((pred == labels).mean()),
            "top5": float((ahead < 5).mean()) if K > 10 else None,
            "precision": precision, "recall": recall, "f1": f1, "support": support,
            "predicted": predicted, "macro_f1": float(f1[present].mean())}


def compare(what, got, want, K):
    """The JSON's metrics (predict's top level, or train's "test") against reference()."""
    per = got["per_class"]
    ok(len(per) == K and [c["class"] for c in per] == list(range(K)),
       "%s: one per_class entry per class, in order" % what)
    ok(np.array_equal(np.array(got["confusion"]), want["confusion"]),
       "%s: the %dx%d confusion matrix equals numpy's" % (what, K, K))
    ok(abs(got["accuracy"] - want["accuracy"]) <= TOL,
       "%s: accuracy %.6f (numpy %.6f)" % (what, got["accuracy"], want["accuracy"]))
    if want["top5"] is None:
        ok(got["top5_accuracy"] is None, "%s: no top-5 for %d classes (null)" % (what, K))
    else:
        ok(got["top5_accuracy"] is not None and abs(got["top5_accuracy"] - want["top5"]) <= TOL,
           "%s: top-5 accuracy %s (numpy %.6f)" % (what, got["top5_accuracy"], want["top5"]))
    worst = 0.0
    counts_equal = True
    for c in per:
        k = c["class"]
        worst = max(worst, abs(c["precision"] - want["precision"][k]),
                    abs(c["recall"] - want["recall"][k]), abs(c["f1"] - want["f1"][k]))
        counts_equal &= c["support"] == want["support"][k] and c["predicted"] == want["predicted"][k]
    ok(worst <= TOL and counts_equal, "%s: per-class precision, recall, F1, support and "
       "predicted counts (largest difference %.2g)" % (what, worst))
    ok(abs(got["macro_f1"] - want["macro_f1"]) <= TOL,
       "%s: macro-F1 %.6f (numpy %.6f)" % (what, got["macro_f1"], want["macro_f1"]))


def predictions(path):
    with open(path) as f:
        d = json.load(f)
    labels = np.array([p["label"] for p in d["predictions"]])
    logits = np.array([p["logits"] for p in d["predictions"]], dtype=np.float32)
    return d, labels, logits


def main():
    with tap.scratch_dir("imgset-metrics-") as tmp:
        for like, K, counts in (("tinyimagenet", 200, ("1600", "400")), ("cifar10", 10, ("600", "200"))):
            d, ckpt = os.path.join(tmp, like), os.path.join(tmp, like + ".ckpt")
            train_json, pred_json = os.path.join(tmp, like + "-train.json"), os.path.join(tmp, like + "-pred.json")
            rc, _, err = tap.imgset("gen", "--like", like, "--train", counts[0], "--test", counts[1],
                                    "--seed", "2", "--out", "mmap:" + d)
            rc2, _, err2 = tap.imgset("train", "mmap:" + d, "--model", "mlp", "--epochs", "2",
                                      "--batch", "50", "--mean", "auto", "--std", "auto",
                                      "--save", ckpt, "--json", train_json, timeout=600)
            rc3, out, err3 = tap.imgset("predict", ckpt, "mmap:" + d, "--batch", "50",
                                        "--json", pred_json)
            if not ok(rc == rc2 == rc3 == 0, "%s: generate, train mlp, predict (%s)" %
                      (like, (err + err2 + err3).strip() or "ok")):
                continue
            got, labels, logits = predictions(pred_json)
            want = reference(labels, logits, K)
            compare("%s predict" % like, got, want, K)

            lines = [l for l in out.splitlines() if "worst classes by F1:" in l]
            named = [part.split("(")[0].strip() for part in lines[0].split(":", 1)[1].split(";")] \
                if lines else []
            order = [k for k in np.lexsort((np.arange(K), want["f1"])) if want["support"][k] > 0]
            names = {c["class"]: c["name"] for c in got["per_class"]}
            want_named = ["%s %.3f" % (names[k], want["f1"][k]) for k in order[:3]]
            ok(named == want_named, "%s predict: the terminal names the 3 classes of lowest F1 "
               "(%s)" % (like, "; ".join(named)))

            with open(train_json) as f:
                t = json.load(f)
            test = t["test"]
            confusion = np.array(test["confusion"])
            last = t["epochs"][-1]
            ok(confusion.sum() == int(counts[1]) and
               abs(test["accuracy"] - last["test_accuracy"]) <= TOL and
               abs(test["macro_f1"] - last["test_macro_f1"]) <= TOL and
               (test["top5_accuracy"] is None) == (K <= 10) and
               (K <= 10 or abs(test["top5_accuracy"] - last["test_top5_accuracy"]) <= TOL),
               "%s train: the test section covers the %s test images and agrees with the last "
               "epoch's accuracy, macro-F1 and top-5" % (like, counts[1]))
            # train's per-class scores from its own confusion matrix
            ref = reference(np.repeat(np.arange(K), confusion.sum(1)),
                            np.eye(K, dtype=np.float32)[np.concatenate(
                                [np.repeat(np.arange(K), confusion[r]) for r in range(K)])], K)
            ok(np.array_equal(ref["confusion"], confusion),
               "%s train: (confusion rebuilt from its rows)" % like)
            ref["top5"] = test["top5_accuracy"] if K > 10 else None   # not from a confusion
            compare("%s train" % like, test, ref, K)
            ok(t["loss"] == "cce" and t["activation"] == "relu" and t["normalize"] == "meanstd"
               and len(t["mean"]) == 3 and t["mean"] != [0.5, 0.5, 0.5],
               "%s train: the JSON records loss, activation and the measured normalisation" % like)
    tap.finish()


if __name__ == "__main__":
    main()
