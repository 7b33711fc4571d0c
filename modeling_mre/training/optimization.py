"""What the optimizer and LoRA train, derived from a method's declared pretrained submodules (never from names)."""

import torch
from torch import nn

from ..models import MREPreTrainedModel


# The attention projections that LoRA adapts in an "encoder" submodule: query and value, as PEFT's
# defaults for BERT, under the names of the common families (BERT/MiniLM/RoBERTa/ViT, CLIP, DistilBERT).
LORA_ATTENTION_PROJECTIONS = ("query", "value", "q_proj", "v_proj", "q_lin", "v_lin")


def encoder_parameter_ids(model: MREPreTrainedModel) -> set[int]:
    """The parameters of every submodule that trains at the encoder learning rate (role "encoder")."""
    return {
        id(parameter)
        for name, role in model.pretrained_submodules().items()
        if role == "encoder"
        for parameter in getattr(model, name).parameters()
    }


def parameter_groups(
    model: nn.Module,
    encoder_ids: set[int],
    learning_rate: float,
    new_layer_learning_rate: float,
    weight_decay: float = 0.0,
) -> list[dict]:
    """
    AdamW groups of `model`'s trainable parameters: the pretrained encoders' (`encoder_ids`, from
    `encoder_parameter_ids` on the model before any PEFT wrapping) at `learning_rate`, everything
    else at `new_layer_learning_rate`: method layers, submodules of role "new", and what PEFT adds
    (LoRA matrices, trainable marker rows), which are new parameters. Each is split in two, as
    `run_glue_no_trainer.py` does: `weight_decay` on weight matrices, none on biases, normalisation
    weights and other vectors (a CRF's start and end scores), which decay would only pull to zero.
    """
    groups = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            rate = learning_rate if id(parameter) in encoder_ids else new_layer_learning_rate
            decay = weight_decay if parameter.dim() >= 2 else 0.0
            groups.setdefault((rate, decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def lora_config(model: MREPreTrainedModel, marker_ids: list[int], r: int = 8, alpha: int = 16, dropout: float = 0.1):
    """
    A `peft.LoraConfig` for `model`: LoRA on the attention projections of its "encoder" submodules,
    every new layer (each child that is not a pretrained submodule) trained and saved whole
    (`modules_to_save`), and the text encoder's rows of the entity markers (`marker_ids`, new tokens;
    none for an entity recognizer) trained while the rest of the vocabulary stays frozen. Frozen
    submodules stay frozen.
    """
    from peft import LoraConfig

    roles = model.pretrained_submodules()
    targets = [
        f"{name}.{module_name}"
        for name, role in roles.items()
        if role == "encoder"
        for module_name, module in getattr(model, name).named_modules()
        if isinstance(module, nn.Linear) and module_name.rsplit(".", 1)[-1] in LORA_ATTENTION_PROJECTIONS
    ]
    encoders = [name for name, role in roles.items() if role == "encoder"]
    if not targets:
        raise ValueError(f"LoRA found no attention projection {LORA_ATTENTION_PROJECTIONS} in the encoders {encoders}")
    # PEFT matches module names by suffix, so parameter-free children ("dropout") must stay out, and
    # it cannot wrap a container: a ModuleList's layers are saved one by one.
    new_layers = []
    for name, child in model.named_children():
        if name in roles or not any(True for _ in child.parameters()):
            continue
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            new_layers += [f"{name}.{key}" for key, _ in child.named_children()]
        else:
            new_layers.append(name)
    # PEFT also matches by plain string suffix ("watchers" would catch "text_reads_watchers").
    clashes = {
        layer: name
        for layer in new_layers
        for name, _ in model.named_modules()
        if name != layer and name.endswith(layer)
    }
    if clashes:
        raise ValueError(f"LoRA's modules_to_save would also catch other modules {clashes}: rename these layers")
    embeddings = model.get_input_embeddings()
    embedding_name = next(name for name, module in model.named_modules() if module is embeddings)
    new_tokens = {"trainable_token_indices": {embedding_name: list(marker_ids)}} if marker_ids else {}
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, modules_to_save=new_layers, **new_tokens
    )


def loss_terms(model: MREPreTrainedModel, outputs) -> dict[str, torch.Tensor]:
    """The classification loss and each declared auxiliary loss of `outputs`, unweighted, for logging."""
    names = ["classification_loss", *model.auxiliary_losses]
    return {name: outputs[name] for name in names if outputs.get(name) is not None}
