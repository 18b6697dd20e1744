/* optim.h — SGD (momentum, Nesterov, weight decay) and learning-rate schedules; pure functions. */
#ifndef IMGSET_OPTIM_H
#define IMGSET_OPTIM_H

#include <stddef.h>
#include <stdint.h>

/* Hyper-parameters of torch.optim.SGD (dampening 0). */
typedef struct SgdConfig {
    float momentum;       /* 0 = plain SGD */
    float weight_decay;   /* L2 penalty added to the gradient: g + weight_decay * p */
    int nesterov;         /* 1 = Nesterov momentum (needs momentum > 0) */
} SgdConfig;

/*
 * One SGD step on n parameters, exactly as torch.optim.SGD with dampening 0:
 *   g = grad + wd * p;  v = momentum * v + g;  g = nesterov ? g + momentum * v : v;
 *   p -= lr * g.
 * params, velocity, grads (n); velocity starts at zero (equivalent to PyTorch's first-step
 * initialisation v = g) and is untouched when momentum is 0.
 */
void sgd_step(float *params, float *velocity, const float *grads, size_t n, float lr,
              const SgdConfig *config);

typedef enum LrKind {
    LR_CONSTANT = 0,
    LR_STEP = 1,      /* base * gamma^floor((step - warmup) / step_size) */
    LR_COSINE = 2,    /* min + (base - min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2 */
} LrKind;

typedef struct LrSchedule {
    LrKind kind;
    float base_lr;
    int64_t warmup_steps;  /* linear warm-up: base * (step + 1) / warmup for step < warmup */
    int64_t total_steps;   /* cosine: the step where the rate reaches min_lr */
    int64_t step_size;     /* step: steps between decays (> 0) */
    float gamma;           /* step: decay factor */
    float min_lr;          /* cosine: the final rate */
} LrSchedule;

/* The learning rate for optimiser step `step` (0-based). */
float lr_at(const LrSchedule *schedule, int64_t step);

#endif
