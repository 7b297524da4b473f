"""Command-line options of the stage commands, as argparse parsers and nothing else.

Each module builds one command's parser (``build_parser()``) and turns parsed
options into the configuration its runtime takes. The command-line tools
(:mod:`pvhpc.cli`) and the workflow loader (:mod:`pvhpc.workflow`) both use them,
so a workflow file is checked against exactly the options the command accepts.
"""
