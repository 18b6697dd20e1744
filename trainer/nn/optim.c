/* optim.c — SGD with momentum / Nesterov / weight decay, and the learning-rate schedules. */
#include "optim.h"

#include <math.h>

void sgd_step(float *params, float *velocity, const float *grads, size_t n, float lr,
              const SgdConfig *config)
{
    float mu = config->momentum, wd = config->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] + wd * params[i];
        if (mu != 0.0f) {
            velocity[i] = mu * velocity[i] + g;
            g = config->nesterov ? g + mu * velocity[i] : velocity[i];
        }
        params[i] -= lr * g;
    }
}

float lr_at(const LrSchedule *s, int64_t step)
{
    if (step < 0)
        step = 0;
    if (step < s->warmup_steps)
        return s->base_lr * (float)(step + 1) / (float)s->warmup_steps;
    int64_t t = step - s->warmup_steps;
    switch (s->kind) {
    case LR_STEP:
        return s->step_size > 0 ? s->base_lr * powf(s->gamma, (float)(t / s->step_size))
                                : s->base_lr;
    case LR_COSINE: {
        int64_t span = s->total_steps - s->warmup_steps;
        if (span <= 0 || t >= span)
            return s->min_lr;
        double c = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)span));
        return (float)(s->min_lr + (s->base_lr - s->min_lr) * c);
    }
    default:
        return s->base_lr;
    }
}
