# Random-weight mamba-2.8b-hf-shaped checkpoint in bf16, plus transformers' fp32 reference (computed from the
# same bf16 weights widened exactly to fp32): greedy tokens and the prompt's last-position logits.
import json, sys, time, torch
from transformers import MambaConfig, MambaForCausalLM
out = sys.argv[1]
# A plain fp32 reference: no TF32 in matmuls nor in cuDNN's convolution (on by default for the latter).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
t0 = time.time()
torch.manual_seed(1234)
config = MambaConfig(vocab_size=50280, hidden_size=2560, num_hidden_layers=64, state_size=16, expand=2, conv_kernel=4,
                     time_step_rank=160, use_bias=False, use_conv_bias=True, residual_in_fp32=True, layer_norm_epsilon=1e-5,
                     tie_word_embeddings=True, pad_vocab_size_multiple=8, bos_token_id=0, eos_token_id=0, pad_token_id=0)
with torch.device("cuda"):
    model = MambaForCausalLM(config)
model = model.to(torch.bfloat16).eval()
n = sum(p.numel() for p in model.parameters())
model.save_pretrained(out, safe_serialization=True, max_shard_size="50GB")
t_save = time.time() - t0
model = model.float()  # the bf16 weights, widened exactly
prompt = [510, 3158, 8516, 30013, 27287, 689, 253, 22658, 4370, 15]
ids = torch.tensor([prompt], device="cuda")
with torch.no_grad():
    last = model(ids).logits[0, -1].float()
    greedy = model.generate(ids, max_new_tokens=8, do_sample=False)[0, len(prompt):].tolist()
top2 = torch.topk(last, 2).values.tolist()
json.dump({"prompt": prompt, "greedy": greedy, "lastLogits": last.cpu().tolist(), "parameters": n,
           "top2": top2, "transformers_seconds": time.time() - t0, "save_seconds": t_save,
           "reference": "transformers MambaForCausalLM fp32 forward (TF32 off) from the bf16 weights, torch %s" % torch.__version__},
          open(out + "/reference.json", "w"))
print("parameters", n, "greedy", greedy, "top2", top2, "seconds", time.time() - t0, flush=True)
