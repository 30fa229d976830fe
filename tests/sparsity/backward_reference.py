"""An independent reference for backward elimination's gradients, shared by its tests (pytest puts this folder
on the path): dense HF layers whose eliminated rows' updates are detached."""

import torch

from lemo.testing import loss_and_grads


def reference_grads(
    model: torch.nn.Module, ids: torch.Tensor, kept_rows: dict[int, torch.Tensor], **kw
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and LoRA gradients of `model` (PEFT, no lemo) with out = h + u[K] + u[~K].detach() in layer i, K being
    `kept_rows[i]` (rows of a batch of one).

    The update of an eliminated row is a constant, so no gradient reaches its query, its MLP or (through its
    query) anybody's K and V; kept rows' updates are differentiated through everything, K and V of all rows too.
    """
    for i, layer in enumerate(model.base_model.model.model.layers):
        rows = kept_rows[i]

        def hook(module, args, kwargs, out, rows=rows):
            h = args[0] if args else kwargs["hidden_states"]
            u = out - h  # [1, T, d]
            keep = torch.zeros(u.shape[1], 1, dtype=torch.bool)  # [T, 1]
            keep[rows] = True
            return h + torch.where(keep, u, u.detach())

        layer.register_forward_hook(hook, with_kwargs=True)
    return loss_and_grads(model, ids, **kw)
