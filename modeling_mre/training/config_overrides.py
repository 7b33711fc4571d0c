"""`--config_overrides` of `train_accelerate.py`: fields of a method's config from one command-line string."""

import json
import re


def parse_config_overrides(overrides: str | None, config_class) -> dict:
    """`"a=1,b=false,c=[2,4]"` -> {"a": 1, "b": False, "c": [2, 4]}, for fields of `config_class` only."""
    if not overrides:
        return {}
    fields = config_class.__dataclass_fields__
    parsed = {}
    for item in re.split(r",(?=\s*\w+\s*=)", overrides):
        name, separator, value = item.partition("=")
        name = name.strip()
        if not separator or name not in fields:
            raise ValueError(
                f"--config_overrides: {item.strip()!r} is not <field>=<value> for a field of {config_class.__name__} "
                f"(its fields: {', '.join(sorted(fields))})"
            )
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            parsed[name] = value.strip()
        if type(parsed[name]) is int and fields[name].type in (float, float | None):
            parsed[name] = float(parsed[name])  # "temperature=1": the strict config takes no int for a float
    return parsed
