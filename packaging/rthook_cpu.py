# PyInstaller runtime hook of the CPU bundle (runs before the app's own code).
# The CPU bundle carries PyPI's CUDA build of torch with only the CUDA libraries that torch needs to
# load; the large ones are stubs that stop the program if called (packaging/cuda_libs.py). Hiding
# every GPU keeps torch on the CPU on a machine that has one, so no stub is ever reached.
import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
