"""Pydantic models for the structured data that crosses a component boundary."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from contracts.arrays import ContractError, check_array


class _Arrays(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class TextEmbeddings(_Arrays):
    """What an encoder returns and a backbone reads.

    ``hidden_states [B, L, D]`` float32, ``attention_mask [B, L]`` bool (True where a
    real token is), ``pooled [B, P]`` float32 or None.
    """

    hidden_states: np.ndarray
    attention_mask: np.ndarray
    pooled: np.ndarray | None = None

    @field_validator("hidden_states", mode="before")
    @classmethod
    def _hidden(cls, value: object) -> np.ndarray:
        return check_array(value, "hidden_states", ("B", "L", "D"))

    @field_validator("attention_mask", mode="before")
    @classmethod
    def _mask(cls, value: object) -> np.ndarray:
        return check_array(value, "attention_mask", ("B", "L"), dtype=None).astype(bool)

    @field_validator("pooled", mode="before")
    @classmethod
    def _pooled(cls, value: object) -> np.ndarray | None:
        return None if value is None else check_array(value, "pooled", ("B", "P"))

    @model_validator(mode="after")
    def _agree(self) -> TextEmbeddings:
        batch, length = self.hidden_states.shape[:2]
        if self.attention_mask.shape != (batch, length):
            raise ContractError(
                f"attention_mask: expected [B, L] = {(batch, length)} to match hidden_states "
                f"{tuple(self.hidden_states.shape)}, got {tuple(self.attention_mask.shape)}"
            )
        if self.pooled is not None and self.pooled.shape[0] != batch:
            raise ContractError(
                f"pooled: expected batch {batch} to match hidden_states, "
                f"got shape {tuple(self.pooled.shape)}"
            )
        return self

    @property
    def batch_size(self) -> int:
        return int(self.hidden_states.shape[0])

    def select(self, index: np.ndarray | list[int] | slice) -> TextEmbeddings:
        """The embeddings of some batch items, in the given order."""
        pooled = None if self.pooled is None else self.pooled[index]
        return TextEmbeddings(hidden_states=self.hidden_states[index],
                              attention_mask=self.attention_mask[index], pooled=pooled)

    @classmethod
    def concat(cls, parts: list[TextEmbeddings]) -> TextEmbeddings:
        """Stack along the batch; every part must have the same length L."""
        pooled = None
        if all(p.pooled is not None for p in parts):
            pooled = np.concatenate([p.pooled for p in parts])
        return cls(hidden_states=np.concatenate([p.hidden_states for p in parts]),
                   attention_mask=np.concatenate([p.attention_mask for p in parts]),
                   pooled=pooled)


class Schedule(_Arrays):
    """A sampling schedule: ``timesteps [N]`` (0 to 1000, as the backbone takes them)
    and ``sigmas [N + 1]``, non-increasing and ending at 0.

    ``scheduler.step(velocity, schedule, i, sample)`` moves ``sample`` from
    ``sigmas[i]`` towards ``sigmas[i + 1]``; a multi-stage scheduler may repeat values.
    """

    timesteps: np.ndarray
    sigmas: np.ndarray

    @field_validator("timesteps", mode="before")
    @classmethod
    def _timesteps(cls, value: object) -> np.ndarray:
        return check_array(value, "timesteps", ("N",))

    @field_validator("sigmas", mode="before")
    @classmethod
    def _sigmas(cls, value: object) -> np.ndarray:
        return check_array(value, "sigmas", ("N + 1",))

    @model_validator(mode="after")
    def _lengths(self) -> Schedule:
        if len(self.sigmas) != len(self.timesteps) + 1:
            raise ContractError(
                f"sigmas: expected N + 1 = {len(self.timesteps) + 1} values for "
                f"{len(self.timesteps)} timesteps, got {len(self.sigmas)}"
            )
        return self

    def __len__(self) -> int:
        return len(self.timesteps)
