import torch, traceback, transformers
from transformers import LlamaConfig, LlamaForCausalLM, StaticCache
import inspect
print(transformers.__version__)
print(inspect.signature(StaticCache.__init__))
cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=1000, max_position_embeddings=4096)
with torch.device("cuda"):
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
C=64; b=2
try:
    cache = StaticCache(config=cfg, max_cache_len=C)
    ids = torch.randint(0,1000,(b,C-1),device="cuda")
    m(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, cache_position=torch.arange(C-1, device="cuda"))
    torch.cuda.synchronize()
    print("prefill ok", [ (l.keys.shape if getattr(l,'keys',None) is not None else None) for l in cache.layers][:1])
    nxt = torch.randint(0,1000,(b,1),device="cuda")
    m(input_ids=nxt, past_key_values=cache, use_cache=True, cache_position=torch.tensor([C-1],device="cuda"))
    torch.cuda.synchronize(); print("decode ok")
except Exception:
    traceback.print_exc()
