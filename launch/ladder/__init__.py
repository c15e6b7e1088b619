"""The small-scale ladder study (issue 6): corpus, run plan and trainer launches, report.

``python -m launch.ladder.run`` builds the corpus if needed, trains every size x arm with the
project's trainer and writes the report; see ``launch/ladder/README.md``.
"""
