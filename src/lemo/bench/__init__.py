"""`lemo bench`: the end-to-end training-step benchmark (peak memory, step time, longest trainable T) and its
figures, installed with the package so it runs from a wheel.

    configs   CONFIGS, the benchmarked configurations, and configure(), which puts a model in one
    model     SHAPES and build_model(): random-init Llama shapes, the embedded SmolLM2, or --model DIR
    step      run_one(): one measured row; probe() and longest_length(): the longest-T search
    run       the command line (main), CSV writing and provenance
    rows      reading and labelling result CSVs (standard library only)
    axes      drawing primitives of the figures
    plot      the figures and `lemo bench plot` (main)

Nothing is imported here: `import lemo.bench.configs` stays free of torch, and the plot modules of matplotlib.
benchmarks/e2e/bench.py and plot.py of a source checkout are thin scripts over run.main and plot.main.
"""
