# The widget every Hub metric Space runs (evaluate-cli's template; it needs the gradio of sdk_version).
from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget


module = evaluate.load(str(Path(__file__).with_name("mner.py")))
launch_gradio_widget(module)
