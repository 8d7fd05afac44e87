"""The course's Keras Tuner network, in PyTorch: conf/model/course_net.yaml names it by
``_target_: course_net.model.CourseNet``."""
