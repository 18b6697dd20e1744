#!/usr/bin/env bash
# predict_identity.sh — in-database inference gives the CLI's answers bit for bit. For a
# fixed-size set (cnn-small) and a mixed-size set resized like the loader (resnet8, batch norm):
# train a checkpoint, copy the set into PostgreSQL, push the model, then compare every test image's
# class and logits from `imgset predict` (reading mmap:) with imgset_predict / imgset_forward
# over the pg store, and `imgset predict --batch 16` with imgset_forward_batch over
# imgset_batch_packed. A checkpoint trained on the GPU (or its host emulation) predicts the same
# way. Then a model replaced by another session is seen by the next statement.
# Prints TAP. Run by test/pg/run.sh with the PG* variables of its cluster (database
# imgset_infer with the extension); needs $IMGSET and $WORK.
set -u
IMGSET=${IMGSET:?}
WORK=${WORK:?}
DBNAME=${IDENTITY_DB:-imgset_infer}
DB="postgresql:///$DBNAME?host=$PGHOST&port=$PGPORT&user=$PGUSER"
CONN="dbname=$DBNAME host=$PGHOST port=$PGPORT user=$PGUSER"
PSQL=${PSQL:-psql}
. "$(dirname "$0")/tap.sh"
# is GOT WANT DESCRIPTION
is() {
    if [ "$1" = "$2" ]; then ok "$3"
    else not_ok "$3"; echo "#   got:  $1"; echo "#   want: $2"; fi
}
sql() { "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$CONN" "$@"; }

# Without predict / model commands nothing below can run: that is a failure, not a skip.
for command in predict model; do
    if ! "$IMGSET" $command --help >/dev/null 2>&1; then
        not_ok "$IMGSET $command --help works"
        echo "1..$n"
        exit 1
    fi
done

# compare JSON TABLE MODEL — one line "images same_class same_logits" comparing the CLI's
# per-image classes and logits (JSON from imgset predict --batch 1) with imgset_predict and
# imgset_forward on every row of TABLE. Logits are compared as float4 text, which PostgreSQL
# prints shortest-exact: equal text is equal bits (the CLI prints %.9g, which reads back exactly).
compare() {
    sql <<EOF
\\set j \`cat $1\`
WITH cli AS (
    SELECT (p->>'index')::bigint AS id, (p->>'class')::int AS class,
           ARRAY(SELECT x::real FROM json_array_elements_text(p->'logits') x) AS logits
    FROM json_array_elements((:'j')::json -> 'predictions') p),
db AS (
    SELECT id, imgset.imgset_predict('$3', img) AS class, imgset.imgset_forward('$3', img) AS logits
    FROM $2)
SELECT count(*), count(*) FILTER (WHERE cli.class = db.class),
       count(*) FILTER (WHERE cli.logits::text = db.logits::text)
FROM cli FULL JOIN db USING (id);
EOF
}

# compare_batched JSON TABLE MODEL GROUP — the same for imgset predict --batch GROUP against
# imgset_forward_batch(model, imgset_batch_packed(ids of GROUP consecutive images), GROUP),
# and imgset_predict_batch on the composite form.
compare_batched() {
    sql <<EOF
\\set j \`cat $1\`
WITH cli AS (
    SELECT (p->>'index')::bigint AS id, (p->>'class')::int AS class,
           ARRAY(SELECT x::real FROM json_array_elements_text(p->'logits') x)::text AS logits
    FROM json_array_elements((:'j')::json -> 'predictions') p),
batches AS (
    SELECT array_agg(id ORDER BY id) AS ids FROM $2 GROUP BY id / $4),
db AS (
    SELECT b.ids, imgset.imgset_forward_batch('$3', imgset.imgset_batch_packed('$2', b.ids), $4) AS logits,
           imgset.imgset_predict_batch('$3', imgset.imgset_batch('$2', b.ids), $4) AS classes
    FROM batches b),
per_image AS (
    SELECT db.ids[i] AS id, db.classes[i] AS class,
           ARRAY(SELECT db.logits[i][k] FROM generate_series(1, array_length(db.logits, 2)) k)::text AS logits
    FROM db, generate_subscripts(db.ids, 1) i)
SELECT count(*), count(*) FILTER (WHERE cli.class = per_image.class),
       count(*) FILTER (WHERE cli.logits = per_image.logits)
FROM cli FULL JOIN per_image USING (id);
EOF
}

# first_logits JSON — the logits of the first image in a predict JSON, as PostgreSQL prints real[].
first_logits() {
    sql <<EOF
\\set j \`cat $1\`
SELECT ARRAY(SELECT x::real FROM json_array_elements_text((:'j')::json -> 'predictions' -> 0 -> 'logits') x)::text;
EOF
}

for like in cifar10 mixed; do
    A="mmap:$WORK/identity-$like" P="$DB&dataset=id_$like" CK="$WORK/identity-$like.safetensors"
    if [ "$like" = cifar10 ]; then
        counts="--train 1200 --test 150" train="--model cnn-small --epochs 3" model=m_cifar
    else
        counts="--train 60 --test 30" train="--model resnet8 --epochs 1 --size 24" model=m_mixed
    fi
    t "gen --like $like" "$IMGSET" gen --like "$like" $counts --seed 5 --out "$A"
    t "train $train on $like, --save a checkpoint" "$IMGSET" train "$A" $train --batch 32 --seed 3 --save "$CK"
    t "convert $like into postgresql" "$IMGSET" convert "$A" "$P"
    t "model push $model" "$IMGSET" model push "$CK" --db "$CONN" --name "$model"
    t "imgset predict --batch 1 from mmap ($like)" "$IMGSET" predict "$CK" "$A" --json "$WORK/p1-$like.json"
    want=$(sed -n 's/.*"images": \([0-9]*\).*/\1/p' "$WORK/p1-$like.json")
    got=$(compare "$WORK/p1-$like.json" "imgset.id_${like}_test" "$model" 2>&1)
    is "$got" "$want|$want|$want" "$like: imgset_predict / imgset_forward over the pg store = imgset predict: classes and logits of all $want images, bit for bit"
    t "imgset predict --batch 16 from mmap ($like)" "$IMGSET" predict "$CK" "$A" --batch 16 --json "$WORK/p16-$like.json"
    got=$(compare_batched "$WORK/p16-$like.json" "imgset.id_${like}_test" "$model" 16 2>&1)
    is "$got" "$want|$want|$want" "$like: imgset_forward_batch / imgset_predict_batch (groups of 16) = imgset predict --batch 16, bit for bit"
    acc_cli=$(sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' "$WORK/p1-$like.json")
    acc_sql=$(sql -c "SELECT to_char(avg((imgset.imgset_predict('$model', img) = label)::int), 'FM0.000000') FROM imgset.id_${like}_test" 2>&1)
    is "$acc_sql" "$acc_cli" "$like: accuracy in SQL $acc_sql = the CLI's"
done

# Every activation, loss and normalisation: the extension builds the model the checkpoint
# records and normalises as it says (mean and std other than 0.5 for two of them).
n_recipe=0
for recipe in "cnn-small --activation tanh --loss bce --normalize minmax" \
              "mlp --activation leaky-relu --leaky-slope 0.2 --loss mse --mean auto --std auto" \
              "cnn-small --activation sigmoid --loss mae --mean 0.4,0.5,0.6 --std 0.3"; do
    n_recipe=$((n_recipe + 1))
    A="mmap:$WORK/identity-cifar10" CK="$WORK/identity-recipe-$n_recipe.safetensors" model=m_recipe_$n_recipe
    t "train --model $recipe" "$IMGSET" train "$A" --model $recipe --epochs 1 --batch 32 --seed 3 --save "$CK"
    t "model push $model" "$IMGSET" model push "$CK" --db "$CONN" --name "$model"
    t "imgset predict ($recipe)" "$IMGSET" predict "$CK" "$A" --json "$WORK/pr-$n_recipe.json"
    want=$(sed -n 's/.*"images": \([0-9]*\).*/\1/p' "$WORK/pr-$n_recipe.json")
    got=$(compare "$WORK/pr-$n_recipe.json" "imgset.id_cifar10_test" "$model" 2>&1)
    is "$got" "$want|$want|$want" "$recipe: imgset_predict / imgset_forward = imgset predict, classes and logits of all $want images bit for bit"
done

# The cifar model learned something (so the classes compared above are not all one class).
classes=$(sql -c "SELECT count(DISTINCT imgset.imgset_predict('m_cifar', img)) FROM imgset.id_cifar10_test" 2>&1)
if [ "${classes:-0}" -ge 3 ] 2>/dev/null; then ok "the cifar model predicts $classes different classes"
else not_ok "the cifar model predicts several classes (got: $classes)"; fi

# A checkpoint trained on the GPU predicts in PostgreSQL as the CLI predicts with it, bit for
# bit. On a machine without a GPU the training runs on the host emulation of CUDA
# (build/imgset_emu, see test/gpu/README.md), and its lines say so.
EMU=$(dirname "$IMGSET")/imgset_emu
if nvidia-smi >/dev/null 2>&1 && "$IMGSET" train --help | grep -q cuda; then
    GPU_IMGSET=$IMGSET gpu_tag="[on a GPU]"
elif [ -x "$EMU" ]; then
    GPU_IMGSET=$EMU gpu_tag="[host emulation, not a GPU]"
else
    GPU_IMGSET= gpu_tag=
fi
gpu_tests=("train on the GPU, --save a checkpoint" "convert into postgresql, model push"
           "imgset predict with the GPU-trained checkpoint"
           "the GPU-trained model: imgset_predict / imgset_forward = imgset predict, bit for bit")
if [ -z "$GPU_IMGSET" ]; then
    for what in "${gpu_tests[@]}"; do
        n=$((n + 1)); echo "ok $n - $what # SKIP no GPU and no build/imgset_emu (a build without CUDA)"
    done
else
    A="mmap:$WORK/identity-gpu" CK="$WORK/identity-gpu.safetensors"
    "$IMGSET" gen --like cifar10 --train 256 --test 64 --seed 9 --out "$A" >/dev/null
    t "$gpu_tag ${gpu_tests[0]}" "$GPU_IMGSET" train "$A" --device cuda --model cnn-small --epochs 1 \
        --batch 32 --seed 3 --save "$CK"
    t "$gpu_tag ${gpu_tests[1]}" bash -c "'$IMGSET' convert '$A' '$DB&dataset=id_gpu' &&
        '$IMGSET' model push '$CK' --db '$CONN' --name m_gpu"
    t "$gpu_tag ${gpu_tests[2]}" "$IMGSET" predict "$CK" "$A" --json "$WORK/pg.json"
    got=$(compare "$WORK/pg.json" imgset.id_gpu_test m_gpu 2>&1)
    is "$got" "64|64|64" "$gpu_tag ${gpu_tests[3]} (64 images)"
fi

# A model replaced by another session is used by the next statement of a session that had it
# cached. Session 1 caches m_cifar, signals, waits until the version changes, predicts again.
CK2="$WORK/identity-cifar10-2.safetensors"
t "train a second cifar checkpoint" "$IMGSET" train "mmap:$WORK/identity-cifar10" --model cnn-small \
    --epochs 1 --batch 32 --seed 11 --save "$CK2"
t "imgset predict with the second checkpoint" "$IMGSET" predict "$CK2" "mmap:$WORK/identity-cifar10" \
    --json "$WORK/p2.json"
rm -f "$WORK/cached"
sql >"$WORK/session1.out" 2>&1 <<EOF &
SELECT imgset.imgset_forward('m_cifar', img)::text FROM imgset.id_cifar10_test WHERE id = 0;
\\! touch $WORK/cached
DO \$\$
DECLARE v bigint := (SELECT version FROM imgset.models WHERE name = 'm_cifar');
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT version FROM imgset.models WHERE name = 'm_cifar') <> v;
        PERFORM pg_sleep(0.05);
    END LOOP;
END \$\$;
SELECT imgset.imgset_forward('m_cifar', img)::text FROM imgset.id_cifar10_test WHERE id = 0;
SELECT calls FROM imgset.imgset_model_cache() WHERE name = 'm_cifar';
EOF
session1=$!
for _ in $(seq 1 200); do [ -f "$WORK/cached" ] && break; sleep 0.05; done
t "model push --replace from another session" "$IMGSET" model push "$CK2" --db "$CONN" --name m_cifar --replace
wait "$session1"
first=$(sed -n 1p "$WORK/session1.out")
second=$(sed -n 2p "$WORK/session1.out")
calls=$(sed -n 3p "$WORK/session1.out")
is "$first" "$(first_logits "$WORK/p1-cifar10.json")" "session 1 first used the old weights"
is "$second" "$(first_logits "$WORK/p2.json")" "after another session replaced the model, session 1's next statement used the new weights (= imgset predict with the new checkpoint)"
is "$calls" "1" "session 1 reloaded the replaced model (its cache entry counts one call of the new version)"

echo "1..$n"
[ "$failed" -eq 0 ]
