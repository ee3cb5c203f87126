#!/usr/bin/python3
"""An independent client for packd: Python stubs generated from the .proto.

Run by tests/python_client_test.sh against a live `packd serve` with the demo
model (stories260K) and tenant key. Uses only the system's Python 3 with
Debian's python3-grpcio and python3-protobuf, and stubs that protoc with
grpc_python_plugin generated into --stubs (packd/v1/generation_pb2*.py).

Checks one streaming greedy Generate, one Tokenize, one Detokenize, a chat
(Tokenize and Generate with messages) and a
wrong API key.
Exits 0 when every check passed, 1 (with a message) otherwise.
"""

import argparse
import sys

MODEL = "stories260K"
PROMPT = "Once upon a time"
DEMO_KEY = "packd-demo-key"
MAX_TOKENS = 60
EXPECTED_TEXT = (
    ", there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but "
    "it was too high.\nLily"
)
EXPECTED_IDS = [1, 403, 407, 261, 378]
RPC_TIMEOUT_S = 60


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    print(f"ok: {what}")


def auth(key):
    return (("authorization", f"Bearer {key}"),)


def check_streaming_generate(pb2, stub):
    req = pb2.GenerateRequest(model=MODEL, text=PROMPT, max_tokens=MAX_TOKENS,
                              stream=True)
    req.sampling.temperature = 0.0  # proto3 optional: set explicitly
    check(req.sampling.HasField("temperature"),
          "request has sampling.temperature set (to 0)")
    responses = list(stub.Generate(req, metadata=auth(DEMO_KEY),
                                   timeout=RPC_TIMEOUT_S))
    text = "".join(r.text for r in responses)
    check(text == EXPECTED_TEXT,
          f"streamed text is the greedy reference (got {text!r})")
    check(len(responses) == MAX_TOKENS,
          f"{MAX_TOKENS} stream messages (got {len(responses)})")
    per_message = [len(r.token_ids) for r in responses]
    check(all(n == 1 for n in per_message),
          f"one token id per message (got counts {sorted(set(per_message))})")
    unfinished = [i for i, r in enumerate(responses[:-1])
                  if r.finish_reason != pb2.FINISH_REASON_UNSPECIFIED]
    check(not unfinished,
          f"no finish_reason before the last message (set at {unfinished})")
    last = responses[-1]
    check(last.finish_reason == pb2.FINISH_REASON_LENGTH,
          "last message has finish_reason FINISH_REASON_LENGTH (got "
          f"{pb2.FinishReason.Name(last.finish_reason)})")
    check(last.HasField("usage") and
          last.usage.completion_tokens == MAX_TOKENS,
          f"usage.completion_tokens == {MAX_TOKENS} (got "
          f"{last.usage.completion_tokens})")
    check(last.usage.prompt_tokens == len(EXPECTED_IDS),
          f"usage.prompt_tokens == {len(EXPECTED_IDS)} (got "
          f"{last.usage.prompt_tokens})")


def check_tokenize(pb2, stub):
    resp = stub.Tokenize(
        pb2.TokenizeRequest(model=MODEL, text=PROMPT, add_special_tokens=True),
        metadata=auth(DEMO_KEY), timeout=RPC_TIMEOUT_S)
    ids = list(resp.token_ids)
    check(ids == EXPECTED_IDS,
          f"Tokenize({PROMPT!r}, add_special_tokens) == {EXPECTED_IDS} "
          f"(got {ids})")


def check_detokenize(pb2, stub):
    resp = stub.Detokenize(
        pb2.DetokenizeRequest(model=MODEL, token_ids=EXPECTED_IDS,
                              skip_special_tokens=True),
        metadata=auth(DEMO_KEY), timeout=RPC_TIMEOUT_S)
    check(resp.text == PROMPT,
          f"Detokenize({EXPECTED_IDS}, skip_special_tokens) == {PROMPT!r} "
          f"(got {resp.text!r})")


def check_chat(pb2, stub):
    """A conversation rendered with the model's chat template (the demo's
    configs/stories-chat.jinja): Tokenize shows the prompt, and Generate with
    the messages gives what Generate with the rendered ids gives."""
    chat = pb2.Chat(messages=[pb2.ChatMessage(role="user", content=PROMPT)])
    resp = stub.Tokenize(pb2.TokenizeRequest(model=MODEL, chat=chat),
                         metadata=auth(DEMO_KEY), timeout=RPC_TIMEOUT_S)
    check(resp.rendered_prompt == "<s>" + PROMPT,
          f"Tokenize(chat).rendered_prompt == {'<s>' + PROMPT!r} "
          f"(got {resp.rendered_prompt!r})")
    ids = list(resp.token_ids)
    check(ids == EXPECTED_IDS,
          f"Tokenize(chat) ids == {EXPECTED_IDS} (got {ids})")

    def generate(**prompt):
        req = pb2.GenerateRequest(model=MODEL, max_tokens=MAX_TOKENS,
                                  stream=True, **prompt)
        req.sampling.temperature = 0.0
        out = stub.Generate(req, metadata=auth(DEMO_KEY), timeout=RPC_TIMEOUT_S)
        return "".join(r.text for r in out)

    by_chat = generate(chat=chat)
    by_ids = generate(token_ids=pb2.TokenIds(ids=ids))
    check(by_chat == by_ids and by_chat,
          f"Generate(chat) == Generate(token_ids) (got {by_chat!r} vs "
          f"{by_ids!r})")


def check_wrong_key(grpc, pb2, stub):
    try:
        stub.Tokenize(pb2.TokenizeRequest(model=MODEL, text=PROMPT),
                      metadata=auth("not-the-demo-key"),
                      timeout=RPC_TIMEOUT_S)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
              f"a wrong API key fails with UNAUTHENTICATED (got {e.code()}: "
              f"{e.details()!r})")
        return
    raise CheckFailed("a wrong API key was accepted")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="host:port of packd")
    parser.add_argument("--stubs", required=True,
                        help="directory holding packd/v1/generation_pb2*.py")
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc
    from packd.v1 import generation_pb2 as pb2
    from packd.v1 import generation_pb2_grpc as pb2_grpc
    print(f"python {sys.version.split()[0]} ({sys.executable}), grpcio "
          f"{grpc.__version__}, stubs from {args.stubs}")

    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT_S)
        stub = pb2_grpc.GenerationStub(channel)
        try:
            check_streaming_generate(pb2, stub)
            check_tokenize(pb2, stub)
            check_detokenize(pb2, stub)
            check_chat(pb2, stub)
            check_wrong_key(grpc, pb2, stub)
        except CheckFailed as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            print(f"FAILED: RPC error {e.code()}: {e.details()!r}",
                  file=sys.stderr)
            return 1
    print("python_client_test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
