"""The one place that names dsembed's files on disk; every module refers to these constants.

A run folder (``dsembed pipeline``) holds ``teacher/``, ``logits_cache/``, one folder per student
and ``record.json``; each training folder holds ``run_config.json`` (what it was started with),
``checkpoints/`` and, once finished, ``model/`` (+ ``training.json`` for students).
"""

from __future__ import annotations

# --- training folders (teacher and student) -------------------------------------------------------
RUN_CONFIG = "run_config.json"  # settings a resumable run was started with; a mismatch refuses to resume
CHECKPOINTS_DIR = "checkpoints"  # HF Trainer epoch checkpoints
MODEL_DIR = "model"  # the finished, dev-selected model
TRAINING_RECORD = "training.json"  # a student's training record (settings, dev metrics, curve, wall time)
TRAINER_STATE = "trainer_state.json"  # written by the HF Trainer inside each checkpoint, last of its files
TRAIN_TIME = "train_time.json"  # training wall time summed over every attempt (killed ones too)

# --- a saved teacher (cross-encoder folder) ---------------------------------------------------------
TEACHER_INFO = "dsembed_teacher.json"

# --- a saved student (sentence-transformers folder + DSE parts) ------------------------------------
STUDENT_CONFIG = "dse_config.json"
STUDENT_HEAD = "dse_head.safetensors"
POOLING_CODE = "dsembed_pooling.py"  # copy of student/pooling.py: top-k pooling for plain sentence-transformers
MODEL_CARD = "README.md"  # the model card dsembed writes (replacing sentence-transformers' stock one)
CARD_FACTS = "dsembed_card.json"  # what the card says that only a pipeline run knows (teacher, test, fidelity)
ST_MODULES = "modules.json"  # sentence-transformers' module list
HF_CONFIG = "config.json"  # a transformers model config
WEIGHTS = "model.safetensors"

# --- ONNX export (its own folder: onnx/ inside the student by default, or anywhere with -o) ---------
ONNX_DIR = "onnx"  # default export folder inside a student folder
ONNX_INFO = "dsembed_onnx.json"  # what the export is: task, pooling, dims, opset, graphs, source student, parity
ONNX_ENCODER = "encoder.onnx"  # token ids -> sentence embedding: transformer AND pooling in one graph
ONNX_ENCODER_INT8 = "encoder.int8.onnx"  # the same graph, weights dynamically quantised to int8
ONNX_HEAD = "head.onnx"  # (u, v) -> logits: the pair head (kept fp32 in every variant)
EXPORT_BENCH_RECORD = "backends.json"  # benchmarks/export_bench.py: torch vs ONNX fp32 vs ONNX int8

# --- teacher logits -----------------------------------------------------------------------------------
LOGITS_FILE = "logits.safetensors"  # one cache entry (teacher x pairs)
LOGITS_META = "meta.json"
BUNDLE_INFO = "teacher.json"  # a logits bundle's teacher record
BUNDLE_SPLIT_FILE = "{split}.safetensors"  # train.safetensors, dev.safetensors

# --- a mined-pairs bundle (teacher-scored extra pairs for the student; written by the augment stage) ----
MINED_PAIRS = "pairs.jsonl"  # one JSON object per line: sentence1, sentence2, strategy
MINED_LOGITS = LOGITS_FILE  # tensor "logits", float32 (n, num_labels): the teacher's raw logits
MINED_INFO = "bundle.json"  # teacher, task, num_labels, n_pairs

# --- pipeline run folder --------------------------------------------------------------------------------
RUN_RECORD = "record.json"
RUN_PLOT = "student_vs_teacher.png"
SEED_DIR = "seed-{seed}"  # one run of a multi-seed pipeline job
STUDENT_EVAL = "eval_{split}.safetensors"  # a pipeline student's logits on dev/test, keyed by model + pairs hash
TEACHER_SUBDIR = "teacher"
LOGITS_CACHE_SUBDIR = "logits_cache"

# --- candidate store ------------------------------------------------------------------------------------
STORE_MANIFEST = "manifest.json"
STORE_EMBEDDINGS = "embeddings.f32"
STORE_PROJECTION = "cand_proj.f32"
STORE_PROJECTION_BF16 = "cand_proj.bf16"  # written with the bfloat16 copy: the screening scan reads only bf16
STORE_TEXTS = "texts.jsonl"
STORE_OFFSETS = "texts.offsets.u64"
STORE_COPIES = {"bfloat16": "embeddings.bf16", "float16": "embeddings.f16", "int8": "embeddings.i8"}
STORE_INT8_SCALE = "embeddings.i8.scale.f32"

# --- speed benchmark ----------------------------------------------------------------------------------
SPEED_RECORD = "speed.json"
SPEED_PARTIAL = "speed.partial.json"
SPEED_PLOT = "speed.png"

# --- offline bases ------------------------------------------------------------------------------------
BASE_MANIFEST = ".dsembed-base.json"  # written last into an assembled base folder

# --- reliability ----------------------------------------------------------------------------------------
SERVE_SOAK_RECORD = "serve_soak.json"  # benchmarks/serve_soak.py: the HTTP service under N clients for T seconds

# --- mined pairs (augmentation) -------------------------------------------------------------------------
MINED_RECORD_SUFFIX = ".record.json"  # mined.jsonl -> mined.record.json: how the pairs were mined
MINED_LOGITS_SUBDIR = "mined_logits"  # per-chunk teacher-logits entries of mined pairs, found by pair hash
# a scored bundle is MINED_PAIRS + MINED_LOGITS (+ its pair_hashes tensor) + MINED_INFO, above
# --- ranking-quality evaluation (dsembed eval-retrieval) -------------------------------------------
RETRIEVAL_SCORES_CHUNK = "teacher_scores_{index:06d}.safetensors"  # pair hashes + teacher scores, one per commit
RETRIEVAL_STORES_DIR = "stores"  # the students' candidate stores inside the evaluation's work folder
RETRIEVAL_TEACHER_DIR = "teacher_scores"  # the pair-hash keyed teacher score cache inside the work folder
RETRIEVAL_RECORD = "{set}.json"  # benchmarks/retrieval_bench.py: one record per benchmark set
RETRIEVAL_PLOT = "{set}.png"  # quality against teacher calls per query
RETRIEVAL_QNLI_TRAIN = "qnli_train_half.tsv"  # benchmarks/retrieval_bench.py --export-qnli-train: pairs to distil on
RETRIEVAL_QNLI_FILES = ("train.tsv", "dev.tsv", "test.tsv")  # ... the train half split by question into train and
# a dev part to select checkpoints on, and the benchmark half's pairs (test: reported, never selected on)
RETRIEVAL_QNLI_SPLIT = "qnli_split.json"  # ... and the split's record (seed, sizes, question hashes)
