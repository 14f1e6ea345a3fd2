"""The one decode loop: K experts in lock-step over a batch, fused by a rule, each with its own KV cache.

prefill -> (fuse -> choose -> stop? -> drop finished rows -> step) until every sequence is done.
`Decoder` runs it one step at a time, so that requests can join the running batch between steps and leave
it when done (continuous batching: the server drives it); `generate` (decode/generate.py) runs it to the
end for a list of prompts. Every user of generation (CLI, eval, server, benchmarks, collection) goes
through one of them.

With a drafter (speculative decoding), a step feeds each row its chosen token followed by a few drafted
ones; every expert and the rule score all of those positions at once, a row keeps the draft only as far as
the fused choice agrees with it (greedy: the same token; sampling: the rejection rule against the fused
distribution), and every cache rolls back per row to what was kept. Greedy output is the plain loop's
(exactly, where the arithmetic is deterministic); sampled output has the plain loop's distribution.

Several rules may decode together (greedy, no drafter): each prompt is then one request per rule, riding on
one row while the rules choose the same token; where they choose differently the row forks (every expert's
state is copied), one row per distinct token. Each request gets what its rule alone would have made, for
the expert steps of the answers' shared prefixes only once.
"""

import itertools
import time
from collections import Counter, deque
from collections.abc import Sequence

import torch

from dllg.decode.config import GenerationConfig
from dllg.decode.drafting import Drafter, make_drafter
from dllg.decode.lockstep import LockstepExperts
from dllg.decode.rows import Generation, RequestGroup, Row, Update
from dllg.decode.sampling import choose_tokens, make_generator, sample_with_drafts, sampling_probs
from dllg.decode.step_inputs import ban_early_eos, check_finite, concat_outputs, fusion_input, prompt_nll
from dllg.decode.stopping import StopChecker
from dllg.errors import DllgError
from dllg.experts.expert import ExpertOutput
from dllg.experts.padding import left_pad
from dllg.experts.pool import ExpertPool
from dllg.fusion.base import FusionOutput, FusionRule, PromptContext


class Decoder:
    """The decode loop, one step at a time, over a batch that requests join and leave.

    `submit` queues prompts (their settings may differ from other requests': sampling, stop strings,
    budgets); each `step` first lets waiting requests join (a prefill), then fuses, chooses and feeds one
    token per running row (more with a drafter) and reports what each request got. A request cancelled
    with `cancel` leaves at the next step. At most `max_rows` rows run at once; the rest wait (rows that
    fork may take the batch past it for a while: no prompt joins until it is below again).

    Given several rules, they decode together (see the module's notes): every rule keeps state for every
    row, and a prompt is submitted once for each rule it should be continued with."""

    def __init__(
        self,
        pool: ExpertPool,
        rule: FusionRule | Sequence[FusionRule],
        drafter: str | Drafter = "none",
        draft_tokens: int = 4,
        max_rows: int | None = None,
    ) -> None:
        if max_rows is not None and max_rows < 1:
            raise DllgError(f"max_rows={max_rows}: it must be at least 1")
        if draft_tokens < 0:
            raise DllgError(f"draft_tokens={draft_tokens}: it must be >= 0")
        self.rules = [rule] if isinstance(rule, FusionRule) else list(rule)
        if not self.rules:
            raise DllgError("no fusion rule given: name at least one")
        self.pool, self.max_rows = pool, max_rows
        running = self._bind(pool)
        self.experts = [pool[i] for i in running]
        backends = [e.backend for e in self.experts]
        for each in self.rules:
            each.notice_backends(backends)
        reads_hidden = any(each.reads_hidden for each in self.rules)
        for expert in self.experts:  # an expert in another process sends hidden states only if read
            expert.outputs_wanted(hidden=reads_hidden)
        self.needs_prompt_nll = any(each.needs_prompt_nll for each in self.rules)
        chosen = make_drafter(drafter) if isinstance(drafter, str) else drafter
        self.drafter = chosen.resolve(backends)
        self.draft_tokens = draft_tokens if self.drafter.name != "none" else 0
        stuck = [each.name for each in self.rules if not each.can_roll_back]
        if self.draft_tokens and (stuck or len(self.rules) > 1):
            if chosen.name == "auto":
                self.draft_tokens = 0  # auto never speculates where it cannot
            elif stuck:
                raise DllgError(
                    f"fusion rule {stuck[0]!r} cannot roll its state back per row yet: "
                    "decode without a drafter"
                )
            else:
                raise DllgError("rules decoding together cannot draft: decode without a drafter")
        # the expert drafter: the smallest running expert, whose steps cost least
        sizes = [e.parameter_count() for e in self.experts] if self.drafter.drafts_with_expert else [0]
        self.drafting_expert = sizes.index(min(sizes))
        self.timings: Counter[str] = Counter()  # seconds spent drafting, in the experts, in the rule
        self.names = [pool.names[i] for i in running]
        self.device = self.experts[0].device
        self.eos_ids = pool.eos_token_ids()
        self.eos_index = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=self.device)
        self.running_index = torch.tensor(running, dtype=torch.long)
        self._batch = LockstepExperts(self.experts, pool.parallel)
        self._rows: list[Row] = []  # running requests, in batch order
        self._waiting: deque[Row] = deque()
        self._cancelled: set[int] = set()
        self._outputs: list[ExpertOutput] = []  # the experts' outputs at each running row's fed positions
        self._requests = itertools.count()
        self._steps = 0

    def _bind(self, pool: ExpertPool) -> list[int]:
        """The experts every rule runs: rules decoding together must run the same ones."""
        running = [each.bind(pool.names) for each in self.rules]
        for each, experts in zip(self.rules[1:], running[1:], strict=True):
            if experts != running[0]:
                raise DllgError(
                    f"fusion rules {self.rules[0].name!r} and {each.name!r} run different experts "
                    f"({running[0]} vs {experts}): decode them separately"
                )
        return running[0]

    # -- requests ------------------------------------------------------------------------------------

    def submit(
        self,
        prompts: list[list[int]],
        config: GenerationConfig | None = None,
        scored_prompts: list[list[int]] | None = None,
        rules: list[list[int]] | None = None,
    ) -> list[int]:
        """Queue prompts (token ids) to be continued with `config`; their request ids, in order: one per
        prompt and rule, prompt by prompt.

        `scored_prompts`: what a rule that weighs experts by perplexity scores, one per prompt (Pack of
        LLMs scores the user's input alone, without the chat template's system prompt); default: the
        prompts. `rules`: the indices of the rules to continue each prompt with (default: every rule)."""
        config = config or GenerationConfig()
        if scored_prompts is not None and len(scored_prompts) != len(prompts):
            raise DllgError(f"{len(scored_prompts)} scored prompts for {len(prompts)} prompts: give one each")
        if not prompts or any(len(p) == 0 for p in prompts):
            raise DllgError("every prompt needs at least one token: an empty prompt cannot be continued")
        every = list(range(len(self.rules)))
        rules = rules if rules is not None else [every] * len(prompts)
        if len(rules) != len(prompts) or any(not r or not set(r) <= set(every) for r in rules):
            raise DllgError(f"give each prompt a non-empty list of rule indices below {len(self.rules)}")
        if len(self.rules) > 1 and not config.greedy:
            raise DllgError("rules decode together only greedily: set temperature 0, or decode them apart")
        group = RequestGroup(
            config,
            StopChecker(self.pool.tokenizer, self.eos_ids, config),
            make_generator(config, self.device),
        )
        drafted = config.greedy or not self.drafter.greedy_only
        budget = self.draft_tokens if drafted else 0
        ids = []
        for i, prompt in enumerate(prompts):
            scored = scored_prompts[i] if scored_prompts is not None else prompt
            requests = {r: next(self._requests) for r in sorted(set(rules[i]))}
            weights: dict[int, list[torch.Tensor]] = {r: [] for r in requests}
            self._waiting.append(Row(requests, list(prompt), list(scored), group, budget, [], weights))
            ids += requests.values()
        return ids

    def cancel(self, request: int) -> None:
        """Stop a request (a client went away): it leaves the batch at the next step, finished "cancelled"."""
        self._cancelled.add(request)

    @property
    def active(self) -> bool:
        """Whether any request is running or waiting."""
        return bool(self._rows or self._waiting)

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        """Free the batch (llama.cpp experts give their sequences back); waiting requests are dropped."""
        self._batch.close()
        self._rows, self._outputs = [], []
        self._waiting.clear()

    # -- one step ------------------------------------------------------------------------------------

    def step(self) -> list[Update]:
        """Admit waiting requests, then decode one step for every running row; what each request got."""
        updates = self._drop_cancelled()
        updates += self._admit()
        if not self._rows:
            return updates
        started = time.perf_counter()
        inputs = fusion_input(self._outputs, self.device)
        fused = [each.fuse(inputs) for each in self.rules]
        self.timings["rule"] += time.perf_counter() - started
        for each, output in zip(self.rules, fused, strict=True):
            check_finite(output, inputs, self.names, each.name, self._steps)
        self._steps += 1
        chosen = [self._choices(output) for output in fused]  # each rule's (tokens, weights) per row
        source = self._branch([tokens for tokens, _ in chosen])
        positions = chosen[0][0].shape[1]

        keep: list[int] = []
        unused = torch.zeros(len(self._rows), dtype=torch.long)  # fed positions past what each row kept
        for row, seq in enumerate(self._rows):
            old = source[row]
            tokens = chosen[next(iter(seq.requests))][0][old].tolist()  # its rules all chose these
            weights = {r: chosen[r][1][old] for r in seq.requests}
            added = self._extend(seq, tokens, weights)
            unused[row] = positions - added
            for r, request in seq.requests.items():
                finished = self._result(seq, r) if seq.reason else None
                updates.append(Update(request, seq.tokens[-added:], weights[r][:added], finished))
            if not seq.reason:
                keep.append(row)
        if unused.any():
            self._batch.rollback(unused)
            for each in self.rules:
                each.rollback(unused)
        self._keep(keep)
        if self._rows:
            self._feed()
        return updates

    def _choices(self, fused: FusionOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """A rule's choice for every row: tokens (B, T) and each pool expert's weights (B, T, N)."""
        scores, weights = fused.scores, fused.weights
        if scores.dim() == 2:  # one position per row: the same shapes as several
            scores, weights = scores.unsqueeze(1), weights.unsqueeze(1)
        rows, positions = scores.shape[:2]
        minimum = [s.group.config.min_new_tokens for s in self._rows]
        if any(minimum) and len(self.eos_index):
            scores = ban_early_eos(scores, [len(s.tokens) for s in self._rows], minimum, self.eos_index)
        full_weights = torch.zeros(rows, positions, len(self.pool))
        full_weights[..., self.running_index] = weights.float().cpu()
        return self._choose(scores), full_weights

    def _branch(self, tokens: list[torch.Tensor]) -> list[int]:
        """Fork every row whose rules chose different tokens (rules decoding together: one position per
        row): one row per distinct token, the rules that chose it riding on it. The forks go after the
        current rows; returns each row's row before the fork."""
        source = list(range(len(self._rows)))
        if len(self.rules) == 1:
            return source
        forks: list[Row] = []
        for row, seq in enumerate(self._rows):
            by_token: dict[int, list[int]] = {}
            for r in seq.requests:
                by_token.setdefault(int(tokens[r][row, 0]), []).append(r)
            for rules in list(by_token.values())[1:]:  # the first token's rules stay on the row
                forks.append(seq.fork(rules))
                source.append(row)
        if forks:
            index = torch.tensor(source, dtype=torch.long)
            self._batch.keep(index)
            for each in self.rules:
                each.keep_rows(index)
            self._outputs = [ExpertOutput(o.logits[index], o.hidden[index]) for o in self._outputs]
            self._rows += forks
        return source

    def _choose(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, T, V) -> (B, T) tokens, each request's rows by its group's settings and random stream."""
        rows, positions, vocab = scores.shape
        groups: dict[RequestGroup, list[int]] = {}
        for i, seq in enumerate(self._rows):
            groups.setdefault(seq.group, []).append(i)
        tokens = torch.empty(rows, positions, dtype=torch.long, device=scores.device)
        for group, members in groups.items():
            index = torch.tensor(members, device=scores.device)
            if group.config.greedy or positions == 1:
                flat = scores[index].reshape(len(members) * positions, vocab)
                chosen = choose_tokens(flat, group.config, group.generator).view(len(members), positions)
            else:  # sampled rows with drafts fed: keep or refuse each draft by the rejection rule
                drafts = torch.tensor([self._rows[i].fed_drafts for i in members])
                probs = sampling_probs(scores[index], group.config)
                chosen = sample_with_drafts(probs, drafts, group.generator)
            tokens[index] = chosen
        return tokens.cpu()

    def _extend(self, seq: Row, tokens: list[int], weights: dict[int, torch.Tensor]) -> int:
        """Append a row's chosen tokens (and each of its rules' weights) as far as they are valid; how many
        positions it used."""
        drafts = seq.fed_drafts
        for j, token in enumerate(tokens):
            seq.tokens.append(token)
            for r, rule_weights in weights.items():
                seq.weights[r].append(rule_weights[j])
            seq.reason = seq.group.stopper.reason(seq.tokens) or ""
            # the next position is valid only if the draft fed there is the token just chosen
            if seq.reason or j >= len(drafts) or drafts[j] != token:
                seq.accepted += j
                if drafts:  # all kept: one more next time; else as many as were kept, plus one
                    seq.budget = min(self.draft_tokens, j + 1 + (j == len(drafts)))
                return j + 1
        raise AssertionError("the last fed position always ends the row's tokens")

    def _feed(self) -> None:
        """Feed every running row its last token (and drafts after it): the experts' next outputs."""
        # Rows that join at the next step need a step of one position per row (a prefill gives one); while
        # the batch is full, the rows waiting for a place let it draft (a place freed by a drafted step is
        # taken one step later).
        joining = self._waiting and (self.max_rows is None or len(self._rows) < self.max_rows)
        limit = self.drafter.max_rows
        drafting = self.draft_tokens and not joining and (limit is None or len(self._rows) <= limit)
        budgets = [seq.budget if drafting else 0 for seq in self._rows]
        last = torch.tensor([[s.tokens[-1]] for s in self._rows], dtype=torch.long)
        started = time.perf_counter()
        if self.drafter.drafts_with_expert and max(budgets):
            drafts, self._outputs = self._batch.step_drafting(last, max(budgets), self.drafting_expert)
            for seq, row in zip(self._rows, drafts.tolist(), strict=True):
                seq.fed_drafts = row
                seq.drafted += len(row)
            self.timings["experts"] += time.perf_counter() - started
            return
        for seq, budget in zip(self._rows, budgets, strict=True):
            seq.fed_drafts = self.drafter.draft(seq.prompt, seq.tokens, budget) if budget else []
            seq.drafted += len(seq.fed_drafts)
        width = max(len(s.fed_drafts) for s in self._rows)
        # rows with fewer drafts are padded by repeating their token: a pad is kept only if it is right
        for seq in self._rows:
            seq.fed_drafts += [seq.tokens[-1]] * (width - len(seq.fed_drafts))
        feed = [[s.tokens[-1], *s.fed_drafts] for s in self._rows]
        drafted = time.perf_counter()
        self.timings["drafting"] += drafted - started
        self._outputs = self._batch.step(torch.tensor(feed, dtype=torch.long))
        self.timings["experts"] += time.perf_counter() - drafted

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self._rows):
            return
        if not keep:  # the batch is done: free it; requests that come later start a new one
            self._batch.release()
            self._rows, self._outputs = [], []
            return
        index = torch.tensor(keep, dtype=torch.long)
        self._batch.keep(index)
        for each in self.rules:
            each.keep_rows(index)
        self._rows = [self._rows[i] for i in keep]
        self._outputs = [ExpertOutput(o.logits[index], o.hidden[index]) for o in self._outputs]

    def _drop_cancelled(self) -> list[Update]:
        if not self._cancelled:
            return []
        updates = []
        for seq in [*self._waiting, *self._rows]:
            for r, request in list(seq.requests.items()):
                if request in self._cancelled:
                    result = self._result(seq, r, "cancelled")
                    updates.append(Update(request, [], torch.zeros(0, len(self.pool)), result))
                    del seq.requests[r]  # the row goes on while other requests ride on it
        self._waiting = deque(s for s in self._waiting if s.requests)
        self._cancelled.clear()
        self._keep([i for i, seq in enumerate(self._rows) if seq.requests])
        return updates

    def _admit(self) -> list[Update]:
        """Let waiting requests join: a prefill of their prompts, appended to the running batch."""
        room = len(self._waiting) if self.max_rows is None else self.max_rows - len(self._rows)
        pending_positions = self._outputs[0].logits.shape[1] if self._rows else 1
        if not self._waiting or room < 1 or pending_positions != 1:
            return []  # a step with drafts is pending: they join after it (the next feed has none)
        joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
        prompts = [s.prompt for s in joining]
        try:
            nll = (
                prompt_nll(self.experts, [s.scored_prompt for s in joining], self.device)
                if self.needs_prompt_nll
                else None
            )
            states, outputs = self._batch.prefill(prompts)
        except Exception as exc:  # these requests fail; the running ones go on
            return [
                Update(request, [], torch.zeros(0, len(self.pool)), error=exc)
                for s in joining
                for request in s.requests.values()
            ]
        ids, mask = left_pad(prompts, self.pool.pad_token_id())  # what a rule may read about the prompts
        context = PromptContext(input_ids=ids, attention_mask=mask, prompt_nll=nll)
        self._batch.join(states)
        for each in self.rules:
            if self._rows:
                each.extend(context)
            else:
                each.start(context)
        self._outputs = concat_outputs(self._outputs, outputs) if self._rows else outputs
        self._rows += joining
        return []

    def _result(self, seq: Row, rule: int, reason: str | None = None) -> Generation:
        """What the request of `rule` on this row got: the row's tokens with its rule's weights."""
        reason = reason or seq.reason
        weights = torch.stack(seq.weights[rule]) if seq.weights[rule] else torch.zeros(0, len(self.pool))
        return Generation(
            text=seq.group.stopper.text(seq.tokens, reason),
            token_ids=list(seq.tokens),
            weights=weights,
            finish_reason=reason,
            expert_names=self.pool.names,
            drafted=seq.drafted,
            accepted=seq.accepted,
        )
